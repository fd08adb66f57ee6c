"""Stage 1, generate: y0 under s0, critique and revision y1 on a Ray Data actor pool; benign answers."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.ray_env import init_ray
from cst_ray.data.sources import read_prompts
from cst_ray.dataio.shards import read_shards
from cst_ray.generation.critique import GENERATION_SCHEMA, CritiqueChain
from cst_ray.generation.responder import RESPONSE_SCHEMA, Responder
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.actors import actor_stage, engine_actor_kwargs
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.prompts import prepare_prompts

log = logging.getLogger(__name__)


def generate(cfg: CSTConfig) -> dict:
    """Ray Data -> vLLM actor pool: y0 under s0 -> critique -> revision y1."""
    pstats = prepare_prompts(cfg)
    out = stage_dir(cfg, "generate")
    table = pq.read_table(stage_dir(cfg, "prompts") / "train.parquet")
    init_ray(cfg.ray)
    model_path = resolve_model(cfg.model)
    g = cfg.generation
    critic_path = resolve_model(dataclasses.replace(cfg.model, name_or_path=g.critic.name_or_path, chat_template="",
                                                    trust_remote_code=g.critic.trust_remote_code)) \
        if g.critic.name_or_path else ""
    t0 = time.time()
    stage = actor_stage(cfg, tokens_per_row=chain_tokens_per_row(cfg))
    stats = stage.run("generate", table, out / "generations", CritiqueChain,
                      dict(engine_actor_kwargs(cfg, model_path, cfg.model.name_or_path), critique=g.critique,
                           filters=g.filters, system_s0=cfg.prompts.s0, critic=g.critic, critic_path=critic_path),
                      GENERATION_SCHEMA, reject_column="reject_reason", done_key="prompt_id")
    d = stats.as_dict()
    d["chain_wall_s"] = round(time.time() - t0, 2)
    d["phase_s"] = phase_seconds(out, d["chain_wall_s"])
    if cfg.data.benign_sources:
        t1 = time.time()
        d["benign"] = _answer_benign(cfg, model_path, out / "benign")
        d["benign"]["stage_wall_s"] = round(time.time() - t1, 2)
    d.update(prompts=pstats, engine=g.engine.backend, model=cfg.model.name_or_path,
             critic=g.critic.name_or_path or "self", stage_wall_s=round(time.time() - t0, 2))
    write_stage_stats(cfg, "generate", d)
    log.info(f"generate: {stats.rows_out} kept, {stats.rows_rejected} rejected {stats.rejected_by_reason}, "
         f"{d['generated_tokens_per_s']} generated tok/s")
    return d


def chain_tokens_per_row(cfg: CSTConfig) -> int:
    """The most tokens the critique chain may generate for one prompt (the stall bound's work)."""
    g = cfg.generation
    e, c = g.engine, g.critique
    y0 = e.max_new_tokens * (c.y0_samples if g.filters.y0_refusal else 1)
    per_round = (c.critique_max_new_tokens or e.max_new_tokens) + e.max_new_tokens * g.critic.revision_samples
    return y0 + c.principles_per_prompt * c.revision_rounds * per_round


def phase_seconds(out: Path, wall_s: float) -> dict:
    """The chain's wall time apportioned to y0 / critique / revision by the calls' own phase
    times (summed over every call, kept and rejected rows alike)."""
    sums = {"y0_s": 0.0, "critique_s": 0.0, "revision_s": 0.0}
    for folder in (out / "generations", out / "rejected_rows"):
        t = read_shards(folder, columns=list(sums)) if folder.is_dir() else None
        for k in sums if t is not None else ():
            sums[k] += float(pc.sum(t.column(k)).as_py() or 0.0)
    total = sum(sums.values())
    return {k.removesuffix("_s"): round(wall_s * v / total, 1) if total else 0.0 for k, v in sums.items()}


def _answer_benign(cfg: CSTConfig, model_path: str, out: Path) -> dict:
    """The policy answers `data.benign_sources` under s1 (the helpful side of benign pairs)."""

    rows, read = [], {}
    for source in cfg.data.benign_sources:
        table, st = read_prompts(source, limit=cfg.data.benign_limit)
        read[source] = st.as_dict()
        rows += [dict(id=f"{r['id']}:benign", prompt_id=r["id"], variant="benign_s1", system=cfg.prompts.s1,
                      prompt=r["prompt"]) for r in table.to_pylist()]
    stats = actor_stage(cfg).run("generate:benign", pa.Table.from_pylist(rows), out, Responder,
                                 engine_actor_kwargs(cfg, model_path, cfg.model.name_or_path), RESPONSE_SCHEMA)
    return {**stats.as_dict(), "read": read}
