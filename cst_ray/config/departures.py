"""Where a config departs from the paper's recipe (Gallego 2024, arXiv:2404.00495), each with the
setting that makes it: the model card, summary.md and the README list these, so no run is
described as "the paper's method" while it trains something else.

The paper: the model being tuned answers under s0 (y0), critiques and revises its own answer
(y1), and is trained with DPO on (s1, x, y1 > y0) and (s0, x, y0 > y1), one s0 wording, full
fine-tuning.
"""

from __future__ import annotations

from cst_ray.config.schema import CSTConfig


def paper_departures(cfg: CSTConfig) -> list[str]:
    """One line per departure: what differs, and the key that sets it."""
    out = []
    g, p, t = cfg.generation, cfg.pairs, cfg.train
    if not p.use_generated:
        out.append("no generated pairs: training on the pair files of `pairs.extra_tasks` only "
                   "(`pairs.use_generated: false`)")
    if g.critic.name_or_path:
        out.append(f"a separate critic model writes the critique and the revision y1, not the tuned model "
                   f"(`generation.critic.name_or_path: {g.critic.name_or_path}`)")
    if g.critique.y0_samples > 1:
        out.append(f"up to {g.critique.y0_samples} answers sampled under s0, the first that is not a refusal kept "
                   f"(`generation.critique.y0_samples: {g.critique.y0_samples}`)")
    if g.critic.revision_samples > 1:
        out.append(f"up to {g.critic.revision_samples} revisions sampled, the first that passes the filters kept "
                   f"(`generation.critic.revision_samples: {g.critic.revision_samples}`)")
    if g.filters.y1_not_harmless or g.filters.y0_refusal:
        out.append("y0 and y1 selected by refusal patterns: a y0 that refuses is dropped, and so is a y1 that is no "
                   "refusal of its own (no refusal phrase, one that goes on to comply, or a restatement of the "
                   "revision request) (`generation.filters.y0_refusal`, `generation.filters.y1_not_harmless`)")
    if cfg.data.benign_sources:
        out.append(f"benign pairs: (s1, benign question, the policy's answer > a refusal written for another, "
                   f"harmful prompt), from {', '.join(cfg.data.benign_sources)} "
                   f"(`data.benign_sources`, `data.benign_limit: {cfg.data.benign_limit}`)")
    if p.s0_augment:
        out.append(f"{len(p.s0_augment) + 1} s0 wordings on the s0 side of the pairs, not one "
                   f"(`pairs.s0_augment`)")
    if t.nll_weight:
        out.append(f"an NLL term on the chosen answer, which also fine-tunes on y0 under s0 "
                   f"(`train.nll_weight: {t.nll_weight:g}`)")
    if t.max_completion_length:
        out.append(f"each answer trained on its first {t.max_completion_length} tokens, not whole "
                   f"(`train.max_completion_length: {t.max_completion_length}`)")
    if t.lora.enabled:
        out.append(f"LoRA adapters (r={t.lora.r}), not full fine-tuning (`train.lora.enabled`)")
    if cfg.policies:
        out.append(f"{len(cfg.policies)} safety policies instead of the s1/s0 pair: one pair per (prompt, policy), "
                   f"chosen by the policy's behaviour in the prompt's category (`policies`)")
    if p.extra_tasks and p.use_generated:
        out.append("extra configurable tasks mixed in (`pairs.extra_tasks`)")
    return out


def departures_markdown(cfg: CSTConfig) -> list[str]:
    """Lines for summary.md and the model card."""
    items = paper_departures(cfg)
    if not items:
        return ["Recipe: the paper's (self-critique, two mirrored DPO pairs per prompt, one s0 wording).", ""]
    return ["Departures from the paper's recipe (Gallego 2024):", "", *[f"- {d}" for d in items], ""]
