"""The evaluation's variants: (name, system prompt) pairs, and the benign-question variant."""

from __future__ import annotations

from cst_ray.config.schema import CSTConfig


def eval_variants(cfg: CSTConfig) -> list[tuple[str, str]]:
    """(variant name, system prompt): s1, the training s0, and unseen s0 wordings."""
    v = [("s1", cfg.prompts.s1), ("s0", cfg.prompts.s0)]
    v += [(f"s0_unseen_{i}", s) for i, s in enumerate(cfg.prompts.s0_unseen, start=1)]
    return v


BENIGN_VARIANT = "benign_s1"  # benign questions under s1, for over-refusal


def is_benign(variant: str) -> bool:
    """The benign-question variants: under s1, or under a policy's first wording (`benign:<policy>`)."""
    return variant == BENIGN_VARIANT or variant.startswith("benign:")
