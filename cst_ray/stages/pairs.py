"""Stage 2, pairs: CST pairs mirrored per system prompt, the DPO baseline, benign pairs, reference log-probs.

Writes pairs/{cst,dpo}.parquet (flat: system, prompt, chosen, rejected, id, task) and the same
rows in TRL's conversational preference format, pairs/trl/{cst,dpo}.parquet: `prompt` = system +
user turns, `chosen` / `rejected` = one assistant turn (`datasets.load_dataset("parquet", ...)`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_table
from cst_ray.data.pairs import (
    augment_s0,
    benign_pairs,
    mirror_pairs,
    read_pair_file,
    to_table,
    to_trl_table,
)
from cst_ray.dataio.shards import read_shards
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.actors import actor_stage
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.training.reference_pass import REF_SCHEMA, ReferenceLogProbs

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
        e, st = read_pair_file(path, limit=cfg.pairs.extra_tasks_limit, tasks=tuple(cfg.pairs.extra_tasks_select))
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
    """`policies`: one pair per (generated row, policy), chosen by the policy's behaviour in the
    row's category; benign pairs under every policy's first wording. The DPO baseline keeps the
    pairs whose chosen side is the refusal (it learns to refuse whatever the system prompt)."""
    import pyarrow.parquet as pq

    from cst_ray.data.policies import compile_policy_pairs
    from cst_ray.data.sources import source_category

    prompts = pq.read_table(stage_dir(cfg, "prompts") / "train.parquet").to_pylist()
    categories = {r["id"]: r.get("category") or source_category(r["source"]) for r in prompts}
    compiled, stats["policy_pairs"] = compile_policy_pairs(rows, cfg.policies, categories, seed=cfg.data.seed)
    benign_all = [dict(b, id=f"{b['id']}:{p.name}", system=p.prompts[0]) for p in cfg.policies for b in benign]
    refusing = [c for c in compiled if c["behaviour"] == "refuse"]
    return compiled + extra + benign_all, refusing + extra + benign_all


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
    from cst_ray.data.refusals import is_degenerate, is_refusal

    answers = read_shards(stage_dir(cfg, "generate") / "benign", columns=["id", "prompt", "response"])
    if answers is None:
        return [], {"answers": 0}

    def unusable(text: str) -> str:
        return "answer_is_refusal" if is_refusal(text) else "answer_degenerate" if is_degenerate(text) else ""

    refusals = sorted({g["y1"] for g in generations if is_refusal(g["y1"])})
    return benign_pairs(sorted(answers.to_pylist(), key=lambda r: r["id"]), refusals, s1=cfg.prompts.s1,
                        unusable=unusable, seed=cfg.data.seed)


def reference_dtype(cfg: CSTConfig) -> str:
    """`pairs.reference_dtype`, with "auto" resolved to the training precision."""
    if cfg.pairs.reference_dtype != "auto":
        return cfg.pairs.reference_dtype
    return {"bf16": "bfloat16", "fp32": "float32"}.get(cfg.train.precision, "auto")  # auto: chosen on the actor


def add_reference_logps(cfg: CSTConfig, tables: dict[str, pa.Table], out: Path) -> tuple[dict, dict]:
    """Ray Data stage: reference log-probs for every pair (the CST set holds every DPO pair)."""
    import dataclasses as dc

    from cst_ray.core.ray_env import init_ray

    init_ray(cfg.ray)
    union = pa.concat_tables(list(tables.values())).to_pylist()
    uniq = pa.Table.from_pylist(list({r["id"]: r for r in union}.values()))
    pool = dc.replace(cfg.generation.pool, batch_size=min(cfg.generation.pool.batch_size, 64))
    st = actor_stage(cfg, pool=pool, tokens_per_row=1, runs_engine=False).run(
        "reference", uniq, out / "reference_logps", ReferenceLogProbs,
        dict(model_path=resolve_model(cfg.model), max_length=cfg.train.max_length,
             min_response_tokens=cfg.train.min_response_tokens, dtype=reference_dtype(cfg), threads=pool.threads,
             trust_remote_code=cfg.model.trust_remote_code, packed=cfg.train.packing), REF_SCHEMA)
    ref = read_shards(out / "reference_logps", columns=["id", "ref_chosen_logps", "ref_rejected_logps"])
    by_id = {r["id"]: r for r in ref.to_pylist()}
    result = {}
    for mode, t in tables.items():
        ids = t.column("id").to_pylist()
        t = t.append_column("ref_chosen_logps", pa.array([by_id[i]["ref_chosen_logps"] for i in ids], pa.float64()))
        result[mode] = t.append_column("ref_rejected_logps", pa.array([by_id[i]["ref_rejected_logps"] for i in ids], pa.float64()))
    missing = sum(r["ref_chosen_logps"] is None for r in by_id.values())
    return result, {**st.as_dict(), "pairs": len(by_id), "not_fitting_max_length": missing}
