"""Padding-free ("packed") forward passes: every sequence of a batch laid end to end in one row.

Chosen and rejected responses of a CST pair differ a lot in length (a refusal vs a full
answer), so padding them to a common length wastes a third of the compute even after length
grouping (BENCHMARKS.md). Packing puts a micro-batch in one row with positions restarting for
each sequence; the linear layers then see no padding at all. Attention must not cross
sequences: `packed_attention` runs scaled-dot-product attention causally within each sequence
(the varlen idea of FlashAttention, done with one SDPA call per sequence), so the cost is
sum(L_i^2), not T^2. Two layouts:
  - `cst_segments`: whole sequences end to end;
  - `cst_shared`: the training layout (`batching.collate_packed`), each pair as prompt, chosen,
    rejected, the prompt once (prefix sharing): the rejected answer attends to the prompt and to
    itself, never to the chosen one, with the positions it would have after the prompt alone.
    The same log-probs as two whole sequences, without computing the prompt twice.

The model's attention is switched to `cst_packed_<base>`, which behaves exactly as the base
implementation whenever neither is passed (generation, padded batches).
"""

from __future__ import annotations

import threading

import torch  # noqa: TID253 (runs only in training workers)
import torch.nn.functional as F  # noqa: TID253 (runs only in training workers)

SEGMENTS_KWARG = "cst_segments"
SHARED_KWARG = "cst_shared"
_seen = threading.local()


def _shared_prompt_attention(query, key, value, shared, scale, dropout_p, gqa) -> torch.Tensor:
    """Attention of prompt-sharing pairs (`batching.collate_packed`): prompt + chosen causally,
    the rejected answer over its prompt (all of it) and itself (causally), never the chosen.
    query: [1, Hq, T, D]; key, value: [1, Hkv, T, D]; shared: ((start, P, C, R), ...) -> [1, Hq, T, D]"""
    out = torch.empty_like(query)
    for s, p, c, r in shared:
        a = s + p + c
        out[:, :, s:a] = F.scaled_dot_product_attention(query[:, :, s:a], key[:, :, s:a], value[:, :, s:a],
                                                        is_causal=True, scale=scale, dropout_p=dropout_p, enable_gqa=gqa)
        if r:
            k = torch.cat([key[:, :, s:s + p], key[:, :, a:a + r]], dim=2)  # [1, Hkv, P + R, D]
            v = torch.cat([value[:, :, s:s + p], value[:, :, a:a + r]], dim=2)
            mask = torch.ones(r, p + r, dtype=torch.bool, device=query.device)  # [R, P + R]
            mask[:, p:] = torch.ones(r, r, dtype=torch.bool, device=query.device).tril()
            out[:, :, a:a + r] = F.scaled_dot_product_attention(query[:, :, a:a + r], k, v, attn_mask=mask, scale=scale,
                                                                dropout_p=dropout_p, enable_gqa=gqa)
    return out


def packed_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, *,
                     dropout: float = 0.0, scaling: float | None = None, cst_segments=None, cst_shared=None,
                     **kwargs):
    """
    Args:
        query: [1, Hq, T, D]; key, value: [1, Hkv, T, D] (Hq a multiple of Hkv: grouped-query)
        cst_segments: (0, e_1, ..., e_n = T): sequence i occupies positions [e_{i-1}, e_i)
        cst_shared: ((start, P, C, R), ...): prompt-sharing pairs (`_shared_prompt_attention`)
    Returns:
        ([1, T, Hq, D], None), the layout transformers' attention functions return.
    Without either the call goes to the model's base attention implementation.
    """
    if cst_segments is None and cst_shared is None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        base = module.config._attn_implementation[len("cst_packed_"):]
        return ALL_ATTENTION_FUNCTIONS[base](module, query, key, value, attention_mask, dropout=dropout,
                                             scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"packed attention takes one row of packed sequences, got batch {query.shape[0]}")
    _seen.flag = True
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    if cst_shared is not None:
        return _shared_prompt_attention(query, key, value, cst_shared, scaling, p, gqa).transpose(1, 2).contiguous(), None
    out = torch.empty_like(query)
    for s, e in zip(cst_segments[:-1], cst_segments[1:]):
        out[:, :, s:e] = F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                                                        is_causal=True, scale=scaling, dropout_p=p, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def enable_packed_attention(model) -> str:
    """Switch `model` (a transformers model, or a PEFT model around one) to packed attention."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = base_model.config._attn_implementation or "sdpa"
    if base.startswith("cst_packed_"):
        return base
    name = f"cst_packed_{base}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(name, packed_attention)
        if base in ALL_MASK_ATTENTION_FUNCTIONS:
            ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    base_model.config._attn_implementation = name  # the setter recurses into sub-configs
    return name


def run_packed(decoder, input_ids: torch.Tensor, position_ids: torch.Tensor, segments: tuple[int, ...] | None = None,
               shared: tuple[tuple[int, int, int, int], ...] | None = None) -> torch.Tensor:
    """The decoder over one packed row (of sequences: `segments`; or of prompt-sharing pairs:
    `shared`); raises if the model never used them (a model whose attention does not receive the
    forward's keyword arguments would silently attend across sequences)."""
    _seen.flag = False
    layout = ({SHARED_KWARG: tuple(tuple(int(x) for x in b) for b in shared)} if shared is not None else
              {SEGMENTS_KWARG: tuple(int(x) for x in segments)})
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False, **layout).last_hidden_state
    if not getattr(_seen, "flag", False):
        raise RuntimeError(f"{type(decoder).__name__} did not pass `{next(iter(layout))}` to its attention: it cannot "
                           "train packed; set train.packing: false")
    return hidden
