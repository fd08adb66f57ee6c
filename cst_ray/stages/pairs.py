"""Stage 2, pairs: CST pairs mirrored per system prompt, the DPO baseline, benign pairs, reference log-probs.

Writes pairs/{cst,dpo}.parquet (flat: system, prompt, chosen, rejected, id, task) and the same
rows in TRL's conversational preference format, pairs/trl/{cst,dpo}.parquet: `prompt` = system +
user turns, `chosen` / `rejected` = one assistant turn (`datasets.load_dataset("parquet", ...)`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_table
from cst_ray.data.pairs import augment_s0, benign_pairs_for_run, mirror_pairs, read_pair_file, to_table, to_trl_table
from cst_ray.data.policies import policy_pair_sets
from cst_ray.data.sources import source_category
from cst_ray.dataio.shards import read_shards
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.reference import add_reference_logps

log = logging.getLogger(__name__)


def build_pairs(cfg: CSTConfig) -> dict:
    """CST mirrored pairs and the DPO-baseline (s1 only) pairs, plus extra configurable tasks."""
    out = stage_dir(cfg, "pairs")
    gens = None
    if cfg.pairs.use_generated:
        columns = ["id", "prompt", "y0", "y1"] + (["prompt_id"] if cfg.policies else [])  # policies: its category
        gens = read_shards(stage_dir(cfg, "generate") / "generations", columns=columns)
    if gens is None and not cfg.pairs.extra_tasks:
        raise StageError(f"no generations under {stage_dir(cfg, 'generate')}; run `cst-ray generate` first")
    rows = gens.to_pylist() if gens is not None else []
    rows.sort(key=lambda r: r["id"])
    extra, extra_stats = [], {}
    for path in cfg.pairs.extra_tasks:
        e, st = read_pair_file(path, limit=cfg.pairs.extra_tasks_limit, tasks=tuple(cfg.pairs.extra_tasks_select),
                               heldout_fraction=cfg.pairs.extra_tasks_eval_fraction, seed=cfg.data.seed)
        extra.extend(e)
        extra_stats[path] = st.as_dict()
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {"generations": len(rows), "extra_tasks": extra_stats}
    # The DPO baseline keeps only the s1 side of mirrored harmlessness pairs, extra tasks included.
    extra_dpo = [r for r in extra if not (r.get("task") == "harmless" and r["system"] != cfg.prompts.s1)]
    stats["dpo_dropped_s0_harmless_extra_rows"] = len(extra) - len(extra_dpo)
    benign, stats["benign"] = _benign_pairs(cfg, rows)
    if cfg.policies:
        return _write_tables(cfg, out, stats, *_policy_pairs(cfg, rows, extra, benign, stats))
    extra = extra + benign
    extra_dpo = extra_dpo + benign
    cst_pairs = mirror_pairs(rows, s1=cfg.prompts.s1, s0=cfg.prompts.s0, mode="cst") + extra
    if cfg.pairs.s0_augment:
        cst_pairs, stats["cst_s0_wordings"] = augment_s0(cst_pairs, s0=cfg.prompts.s0, wordings=cfg.pairs.s0_augment,
                                                         seed=cfg.data.seed)
    dpo_pairs = mirror_pairs(rows, s1=cfg.prompts.s1, s0=cfg.prompts.s0, mode="dpo") + extra_dpo
    return _write_tables(cfg, out, stats, cst_pairs, dpo_pairs)


def _policy_pairs(cfg: CSTConfig, rows: list[dict], extra: list[dict], benign: list[dict],
                  stats: dict) -> tuple[list[dict], list[dict]]:
    """`policies`: the pairs of `policy_pair_sets`, each row's category from prompts/train.parquet."""
    prompts = pq.read_table(stage_dir(cfg, "prompts") / "train.parquet").to_pylist()
    categories = {r["id"]: r.get("category") or source_category(r["source"]) for r in prompts}
    cst, dpo, stats["policy_pairs"] = policy_pair_sets(rows, cfg.policies, categories, extra, benign,
                                                       seed=cfg.data.seed)
    return cst, dpo


def _write_tables(cfg: CSTConfig, out: Path, stats: dict, cst_pairs: list[dict], dpo_pairs: list[dict]) -> dict:
    tables = {"cst": to_table(cst_pairs), "dpo": to_table(dpo_pairs)}
    if cfg.pairs.reference_logps:
        tables, stats["reference_logps"] = add_reference_logps(cfg, tables, out)
    for mode, table in tables.items():
        atomic_write_table(table, out / f"{mode}.parquet")
        atomic_write_table(to_trl_table(table), out / "trl" / f"{mode}.parquet")  # TRL's preference format
        stats[f"{mode}_pairs"] = table.num_rows
    write_stage_stats(cfg, "pairs", stats)
    log.info(f"pairs: {stats['cst_pairs']} CST pairs, {stats['dpo_pairs']} DPO-baseline pairs")
    return stats


def _benign_pairs(cfg: CSTConfig, generations: list[dict]) -> tuple[list[dict], dict]:
    """(s1, benign question, the policy's answer > a refusal) for every usable benign answer."""
    answers = read_shards(stage_dir(cfg, "generate") / "benign", columns=["id", "prompt", "response"])
    if answers is None:
        return [], {"answers": 0}
    return benign_pairs_for_run(answers.to_pylist(), generations, s1=cfg.prompts.s1, seed=cfg.data.seed)
