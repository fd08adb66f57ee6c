"""The pairs stage's reference log-probs (`pairs.reference_logps`): every pair's log-probs under
the reference model, computed once on an actor pool (training/reference_pass) and added to the
pair tables as `ref_chosen_logps` / `ref_rejected_logps`."""

from __future__ import annotations

import dataclasses as dc
from pathlib import Path

import pyarrow as pa

from cst_ray.config.schema import CSTConfig
from cst_ray.core.ray_env import init_ray
from cst_ray.dataio.shards import read_shards
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.actors import actor_stage
from cst_ray.training.reference_pass import REF_SCHEMA, ReferenceLogProbs


def reference_dtype(cfg: CSTConfig) -> str:
    """`pairs.reference_dtype`, with "auto" resolved to the training precision."""
    if cfg.pairs.reference_dtype != "auto":
        return cfg.pairs.reference_dtype
    # bf16-mixed: the fp32 weights, under bf16 autocast as the policy's forward (`reference_autocast`)
    return {"bf16": "bfloat16", "fp32": "float32", "bf16-mixed": "float32"}.get(cfg.train.precision, "auto")


def reference_autocast(cfg: CSTConfig) -> bool:
    """The reference pass runs under bf16 autocast where the training does (`train.precision:
    bf16-mixed`) over fp32 weights, so that before the first update reference == policy."""
    return cfg.train.precision == "bf16-mixed" and reference_dtype(cfg) == "float32"


def add_reference_logps(cfg: CSTConfig, tables: dict[str, pa.Table], out: Path) -> tuple[dict, dict]:
    """Ray Data stage: reference log-probs for every pair (the CST set holds every DPO pair)."""
    init_ray(cfg.ray)
    union = pa.concat_tables(list(tables.values())).to_pylist()
    uniq = pa.Table.from_pylist(list({r["id"]: r for r in union}.values()))
    pool = dc.replace(cfg.generation.pool, batch_size=min(cfg.generation.pool.batch_size, 64))
    st = actor_stage(cfg, pool=pool, tokens_per_row=1, runs_engine=False).run(
        "reference", uniq, out / "reference_logps", ReferenceLogProbs,
        dict(model_path=resolve_model(cfg.model), max_length=cfg.train.max_length,
             min_response_tokens=cfg.train.min_response_tokens, dtype=reference_dtype(cfg), threads=pool.threads,
             trust_remote_code=cfg.model.trust_remote_code, packed=cfg.train.packing,
             autocast_bf16=reference_autocast(cfg), max_completion_length=cfg.train.max_completion_length),
        REF_SCHEMA)
    ref = read_shards(out / "reference_logps", columns=["id", "ref_chosen_logps", "ref_rejected_logps"])
    by_id = {r["id"]: r for r in ref.to_pylist()}
    result = {}
    for mode, t in tables.items():
        ids = t.column("id").to_pylist()
        t = t.append_column("ref_chosen_logps", pa.array([by_id[i]["ref_chosen_logps"] for i in ids], pa.float64()))
        result[mode] = t.append_column("ref_rejected_logps", pa.array([by_id[i]["ref_rejected_logps"] for i in ids], pa.float64()))
    missing = sum(r["ref_chosen_logps"] is None for r in by_id.values())
    return result, {**st.as_dict(), "pairs": len(by_id), "not_fitting_max_length": missing}
