"""Sequence log-probs of responses without materialising full-vocabulary logits.

A causal LM's logits are [N, T, V]; for SmolLM2 (V = 49,152) at T = 512 in fp32 that is
~100 MB per sequence, kept again for backward. Only response positions matter to DPO, so
`PolicyLogProbs` runs the decoder, selects the hidden states of label positions, and feeds
them to `chunked_token_logps`, a fused LM-head + log-softmax + gather whose backward
recomputes each chunk's logits instead of storing them (the Liger/"cut cross-entropy" idea).
Peak extra memory is one chunk of [chunk, V] logits.
"""

from __future__ import annotations

import torch
from torch import nn


class _ChunkedTokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32, or fp64 for gradcheck
        out = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk] @ weight.t()).to(acc)
            out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets = ctx.saved_tensors
        chunk = ctx.chunk
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=grad_out.dtype, device=weight.device) if ctx.needs_input_grad[1] else None
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk]
            g_out = grad_out[s : s + chunk]
            logits = (h @ weight.t()).to(g_out.dtype)
            # d/dlogits of (logit[target] - logsumexp) = onehot - softmax
            g = torch.softmax(logits, dim=-1).mul_(-g_out[:, None])
            g.scatter_add_(1, targets[s : s + chunk, None], g_out[:, None])
            g = g.to(hidden.dtype)
            if grad_h is not None:
                grad_h[s : s + chunk] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).to(grad_w.dtype)
        return grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None), None, None


def chunked_token_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """
    Args:
        hidden:  [M, H]  hidden states at the positions that predict `targets`
        weight:  [V, H]  LM-head weight
        targets: [M]     next-token ids
    Returns:
        [M] log p(target | prefix), fp32
    """
    return _ChunkedTokenLogProbs.apply(hidden, weight, targets, chunk)


def naive_token_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Reference implementation (materialises [M, V] logits): same contract as chunked_token_logps."""
    logits = (hidden @ weight.t()).to(torch.promote_types(hidden.dtype, torch.float32))
    return logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model
    # PEFT wraps the model: PeftModel.base_model (LoraModel).model is the HF model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base.get_decoder(), base.get_output_embeddings()


class PolicyLogProbs(nn.Module):
    """Wraps a causal LM so that its forward returns per-sequence response log-probs.

    forward(input_ids [N, T], attention_mask [N, T], loss_mask [N, T]) -> (logps [N], n_tokens [N])
      loss_mask[n, t] = 1 where token t is a response token whose log-prob counts.
    This is the module handed to DeepSpeed, so ZeRO-3 gathers the LM-head weight (used here,
    outside its own module) through `register_external_parameter`.
    """

    def __init__(self, model: nn.Module, chunk: int = 1024):
        super().__init__()
        self.model = model
        self.chunk = chunk
        _, head = _decoder_and_head(model)
        self._zero3_registered = False
        try:
            import deepspeed

            deepspeed.zero.register_external_parameter(self, head.weight)
            self._zero3_registered = True
        except Exception:  # deepspeed missing: plain PyTorch use
            pass

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor):
        decoder, head = _decoder_and_head(self.model)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        # position t predicts token t+1
        sel = loss_mask[:, 1:].bool()
        h = hidden[:, :-1][sel]  # [M, H]
        targets = input_ids[:, 1:][sel]  # [M]
        tok_logps = chunked_token_logps(h, head.weight, targets, self.chunk)  # [M]
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(sel)[sel]
        logps = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device).index_add(0, rows, tok_logps)
        return logps, sel.sum(dim=1)
