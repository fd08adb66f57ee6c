"""Padding-free ("packed") forward passes: every sequence of a batch laid end to end in one row.

Chosen and rejected responses of a CST pair differ a lot in length (a refusal vs a full
answer), so padding them to a common length wastes a third of the compute even after length
grouping (BENCHMARKS.md). Packing puts the 2B sequences of a micro-batch in one row of T =
sum of lengths tokens, with positions restarting at 0 for each sequence; the linear layers
then see no padding at all. Attention must not cross sequences: `packed_attention` runs
scaled-dot-product attention causally within each sequence (the varlen idea of
FlashAttention, done with one SDPA call per sequence), so the cost is sum(L_i^2), not T^2.

The model's attention is switched to `cst_packed_<base>`, which behaves exactly as the base
implementation whenever no `cst_segments` are passed (generation, padded batches).
"""

from __future__ import annotations

import threading

import torch  # noqa: TID253 (runs only in training workers)
import torch.nn.functional as F  # noqa: TID253 (runs only in training workers)

SEGMENTS_KWARG = "cst_segments"
_seen = threading.local()


def packed_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, *,
                     dropout: float = 0.0, scaling: float | None = None, cst_segments=None, **kwargs):
    """
    Args:
        query: [1, Hq, T, D]; key, value: [1, Hkv, T, D] (Hq a multiple of Hkv: grouped-query)
        cst_segments: (0, e_1, ..., e_n = T): sequence i occupies positions [e_{i-1}, e_i)
    Returns:
        ([1, T, Hq, D], None), the layout transformers' attention functions return.
    Without `cst_segments` the call goes to the model's base attention implementation.
    """
    if cst_segments is None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        base = module.config._attn_implementation[len("cst_packed_"):]
        return ALL_ATTENTION_FUNCTIONS[base](module, query, key, value, attention_mask, dropout=dropout,
                                             scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"packed attention takes one row of packed sequences, got batch {query.shape[0]}")
    _seen.flag = True
    out = torch.empty_like(query)
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
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


def run_packed(decoder, input_ids: torch.Tensor, position_ids: torch.Tensor, segments: tuple[int, ...]) -> torch.Tensor:
    """The decoder over one packed row; raises if the model never used the segments (a model
    whose attention does not receive the forward's keyword arguments would silently attend
    across sequences)."""
    _seen.flag = False
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False,
                     **{SEGMENTS_KWARG: tuple(int(x) for x in segments)}).last_hidden_state
    if not getattr(_seen, "flag", False):
        raise RuntimeError(f"{type(decoder).__name__} did not pass `{SEGMENTS_KWARG}` to its attention: it cannot "
                           "train packed; set train.packing: false")
    return hidden
