"""Stage 0: validate the prompt source and split it by id into train and held-out prompts."""

from __future__ import annotations

import json
import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.core.files import atomic_write_table
from cst_ray.data.sources import max_prompt_chars, read_sources, source_names, split_by_id
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.redo import is_complete

log = logging.getLogger(__name__)


def prepare_prompts(cfg: CSTConfig) -> dict:
    """Validate the prompt source and split it by id into train / held-out eval."""
    out = stage_dir(cfg, "prompts")
    if is_complete(cfg, "prompts"):
        return json.loads((out / "stats.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    max_chars = max_prompt_chars(cfg.generation.engine.max_model_len)  # over-long rows: skipped, counted
    table, per_source = read_sources(cfg.data.source, prompt_field=cfg.data.prompt_field, id_field=cfg.data.id_field,
                                     max_chars=max_chars, category_field=cfg.data.category_field)
    train, held = split_by_id(table, cfg.data.eval_fraction, cfg.data.seed)
    if cfg.data.limit:
        train = train.slice(0, cfg.data.limit)
    if cfg.data.eval_limit:
        held = held.slice(0, cfg.data.eval_limit)
    atomic_write_table(train, out / "train.parquet")
    atomic_write_table(held, out / "eval.parquet")
    names = source_names(cfg.data.source)
    by_source = {n: {"read": st.as_dict(), "train": _count(train, n), "eval": _count(held, n)}
                 for n, st in per_source.items()}
    skipped: dict[str, int] = {}
    for st in per_source.values():
        for reason, n in st.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    stats = {"source": names, "sources": by_source, "read": sum(st.read for st in per_source.values()),
             "kept": sum(st.kept for st in per_source.values()), "skipped": skipped, "train_prompts": train.num_rows,
             "eval_prompts": held.num_rows, "eval_fraction": cfg.data.eval_fraction,
             "not_used_by_limits": table.num_rows - train.num_rows - held.num_rows, "max_prompt_chars": max_chars}
    write_stage_stats(cfg, "prompts", stats)
    log.info(f"prompts: {train.num_rows} train / {held.num_rows} held-out from "
             + ", ".join(f"{n} ({d['train']}/{d['eval']})" for n, d in by_source.items())
             + f" (skipped: {skipped or 'none'})")
    return stats


def _count(table, name: str) -> int:
    return sum(1 for s in table.column("source").to_pylist() if s == name)
