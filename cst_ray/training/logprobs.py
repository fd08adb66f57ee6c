"""Sequence log-probs of responses without materialising full-vocabulary logits.

A causal LM's logits are [N, T, V]; for SmolLM2 (V = 49,152) at T = 512 in fp32 that is
~100 MB per sequence, kept again for backward. Only response positions matter to DPO, so
`PolicyLogProbs` runs the decoder, selects the hidden states of label positions, and feeds
them to `chunked_token_logps`, a fused LM-head + log-softmax + gather whose backward
recomputes each chunk's logits instead of storing them (the Liger/"cut cross-entropy" idea),
turning them into the softmax in place from the forward's saved log-sum-exp. Peak extra
memory is one chunk of [chunk, V] fp32 logits (512 x 49,152: 100 MB) and its bf16 copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch  # noqa: TID253 (runs only in training workers)
from torch import nn  # noqa: TID253 (runs only in training workers)

from cst_ray.training.packing import enable_packed_attention, run_packed


@dataclass(frozen=True)
class HeadTransform:
    """What a model's output head does after `hidden @ W.T`, read from its config:
    logits = softcap(scale * (hidden @ W.T + bias)), softcap(z) = cap * tanh(z / cap) (cap 0: none).

    Phi's `lm_head` has a bias; Cohere multiplies by `logit_scale`; Granite divides by
    `logits_scaling`; Gemma 2 (and Gemma 3 where set) caps with `final_logit_softcapping`.
    Without these the fused path trained those families on another distribution (issue 30)."""

    scale: float = 1.0
    softcap: float = 0.0


def head_transform(model: nn.Module) -> HeadTransform:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg  # Gemma 3 and other multimodal wrappers
    scale = float(getattr(cfg, "logit_scale", None) or 1.0)
    if getattr(cfg, "logits_scaling", None):
        scale /= float(cfg.logits_scaling)
    return HeadTransform(scale=scale, softcap=float(getattr(cfg, "final_logit_softcapping", None) or 0.0))


# Config keys of heads the fused path does not reproduce (the model multiplies or caps its logits in
# a way `head_transform` does not know): such a model is refused, never trained on wrong log-probs.
UNSUPPORTED_HEAD_KEYS = ("lm_head_multiplier", "output_multiplier", "output_logits_scale", "logits_soft_cap",
                         "dim_model_base", "mup_width_multiplier", "width_multiplier")


def check_head_supported(model: nn.Module) -> None:
    """ValueError naming the family when the model's output head is not one the fused path
    applies exactly: a linear layer (with or without bias), `logit_scale`, `logits_scaling`,
    `final_logit_softcapping`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    cfg = getattr(base, "config", None)
    family = getattr(cfg, "model_type", type(base).__name__)
    text_cfg = getattr(cfg, "text_config", None) or cfg
    found = [k for k in UNSUPPORTED_HEAD_KEYS if getattr(text_cfg, k, None) not in (None, 1, 1.0)]
    if not isinstance(head, nn.Linear) or found:
        what = f"config {', '.join(found)}" if found else f"an output head of type {type(head).__name__}"
        raise ValueError(f"model family {family!r} has {what}, which cst-ray's fused log-prob path does not "
                         f"reproduce; refusing to train on log-probs other than the model's own")


def _logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, head: HeadTransform,
            acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-> (the head's logits in `acc`, tanh of the capped argument or None): [chunk, V]."""
    z = h @ weight.t()
    if bias is not None:
        z = z + bias
    z = z.to(acc)
    if head.scale != 1.0:
        z = z * head.scale
    if not head.softcap:
        return z, None
    t = torch.tanh(z / head.softcap)
    return t * head.softcap, t


def _matmul_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The LM-head matmul's dtype: autocast's where it is on (train.precision: bf16-mixed), else
    the hidden states'. The backward, which autograd runs without autocast, reuses it."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


class _ChunkedTokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                chunk: int, head: HeadTransform) -> torch.Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32, or fp64 for gradcheck
        mm = _matmul_dtype(hidden)
        w, b = weight.to(mm), (bias.to(mm) if bias is not None else None)
        out = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        lse = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)  # [M], kept for backward
        for s in range(0, hidden.shape[0], chunk):
            logits, _ = _logits(hidden[s : s + chunk].to(mm), w, b, head, acc)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.head, ctx.mm = chunk, head, mm
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        chunk, head, mm = ctx.chunk, ctx.head, ctx.mm  # backward runs without autocast: the forward's matmul dtype
        w, b = weight.to(mm), (bias.to(mm) if bias is not None else None)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=grad_out.dtype, device=weight.device) if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(bias.shape, dtype=grad_out.dtype, device=bias.device) \
            if bias is not None and ctx.needs_input_grad[2] else None
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk].to(mm)
            g_out = grad_out[s : s + chunk]
            # d/dlogits of (logit[target] - logsumexp) = onehot - softmax; softmax = exp(logits - lse)
            # from the forward's lse, computed in place: one [chunk, V] buffer
            logits, t = _logits(h, w, b, head, g_out.dtype)
            g = logits.sub_(lse[s : s + chunk, None]).exp_().mul_(-g_out[:, None])
            g.scatter_add_(1, targets[s : s + chunk, None], g_out[:, None])
            if t is not None:  # through cap * tanh(z / cap): dz = 1 - tanh^2
                g.mul_(1 - t * t)
            if head.scale != 1.0:
                g.mul_(head.scale)
            g = g.to(mm)
            if grad_h is not None:
                grad_h[s : s + chunk] = (g @ w).to(hidden.dtype)
            if grad_w is not None:
                grad_w += (g.t() @ h).to(grad_w.dtype)
            if grad_b is not None:
                grad_b += g.sum(0).to(grad_b.dtype)
        return (grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None),
                (grad_b.to(bias.dtype) if grad_b is not None else None), None, None, None)


def chunked_token_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 512,
                        bias: torch.Tensor | None = None, head: HeadTransform = HeadTransform()) -> torch.Tensor:
    """
    Args:
        hidden:  [M, H]  hidden states at the positions that predict `targets`
        weight:  [V, H]  LM-head weight
        targets: [M]     next-token ids
        bias:    [V]     LM-head bias, if it has one
        head:    what the head does after the matmul (scale, softcap)
    Returns:
        [M] log p(target | prefix), fp32
    """
    return _ChunkedTokenLogProbs.apply(hidden, weight, bias, targets, chunk, head)


def naive_token_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                      bias: torch.Tensor | None = None, head: HeadTransform = HeadTransform()) -> torch.Tensor:
    """Reference implementation (materialises [M, V] logits): same contract as chunked_token_logps."""
    logits, _ = _logits(hidden, weight, bias, head, torch.promote_types(hidden.dtype, torch.float32))
    return logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model
    # PEFT wraps the model: PeftModel.base_model (LoraModel).model is the HF model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base.get_decoder(), base.get_output_embeddings()


class PolicyLogProbs(nn.Module):
    """Wraps a causal LM so that its forward returns per-sequence response log-probs.

    Padded:  forward(input_ids [N, T], attention_mask [N, T], loss_mask [N, T])
    Packed:  forward(input_ids [1, T], loss_mask [1, T], position_ids [1, T], segments=(0, ..., T))
             (N = len(segments) - 1 sequences end to end, no padding)
    Pairs:   forward(input_ids [1, T], position_ids [1, T], shared=((start, P, C, R), ...),
             pred_index [M], target_ids [M], seq_index [M]) (`batching.collate_packed`: each prompt
             once, N = 2B sequences)
    -> (logps [N], n_tokens [N]);  loss_mask[., t] = 1 where token t is a response token whose
    log-prob counts.
    This is the module handed to DeepSpeed, so ZeRO-3 gathers the LM-head weight (used here,
    outside its own module) through `register_external_parameter`. `packed=True` switches the
    model's attention to `packing.packed_attention` (unchanged for padded batches).
    """

    def __init__(self, model: nn.Module, chunk: int = 512, packed: bool = False):
        super().__init__()
        self.model = model
        self.chunk = chunk
        if packed:
            enable_packed_attention(model)
        check_head_supported(model)
        _, head = _decoder_and_head(model)
        self.head = head_transform(model)
        self._zero3_registered = False
        try:
            import deepspeed

            deepspeed.zero.register_external_parameter(self, head.weight)
            if getattr(head, "bias", None) is not None:
                deepspeed.zero.register_external_parameter(self, head.bias)
            self._zero3_registered = True
        except Exception:  # deepspeed missing: plain PyTorch use
            pass

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                loss_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                segments: tuple[int, ...] | None = None, shared: tuple | None = None,
                pred_index: torch.Tensor | None = None, target_ids: torch.Tensor | None = None,
                seq_index: torch.Tensor | None = None):
        decoder, head = _decoder_and_head(self.model)
        if shared is not None:  # prompt-sharing pairs: the collator names each target's position
            hidden = run_packed(decoder, input_ids, position_ids, shared=shared)
            n_seq = 2 * len(shared)
            h, targets, rows = hidden[0, pred_index], target_ids, seq_index  # [M, H], [M], [M]
        else:
            h, targets, rows, n_seq = self._sequence_targets(decoder, input_ids, attention_mask, loss_mask,
                                                             position_ids, segments)
        tok_logps = chunked_token_logps(h, head.weight, targets, self.chunk, bias=getattr(head, "bias", None),
                                        head=self.head)  # [M]
        logps = torch.zeros(n_seq, dtype=torch.float32, device=input_ids.device).index_add(0, rows, tok_logps)
        return logps, torch.bincount(rows, minlength=n_seq)

    @staticmethod
    def _sequence_targets(decoder, input_ids, attention_mask, loss_mask, position_ids, segments):
        """Padded rows, or whole sequences packed end to end: -> (hidden [M, H] of the positions
        that predict a counted token, targets [M], the sequence of each [M], sequences N)."""
        if segments is not None:
            hidden = run_packed(decoder, input_ids, position_ids, segments)
            n_seq = len(segments) - 1
            # the sequence each position belongs to: [1, T]
            bounds = torch.tensor(segments[1:], device=input_ids.device)
            seq_of = torch.bucketize(torch.arange(input_ids.shape[1], device=input_ids.device), bounds, right=True)[None]
        else:
            hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            n_seq = input_ids.shape[0]
            seq_of = torch.arange(n_seq, device=input_ids.device)[:, None].expand_as(input_ids)
        # position t predicts token t+1; in a packed row the last position of one sequence would
        # predict the next sequence's first token, a prompt token (loss_mask 0), so it never counts
        sel = loss_mask[:, 1:].bool()
        return hidden[:, :-1][sel], input_ids[:, 1:][sel], seq_of[:, 1:][sel], n_seq
