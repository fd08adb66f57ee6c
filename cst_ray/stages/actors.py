"""The actor stages' shared set-up: one `ActorStage` (pool, placement, shards, progress, the
actors' environment) and the constructor arguments every engine actor takes, both from the config."""

from __future__ import annotations

from cst_ray.config.schema import ActorPoolConfig, CSTConfig, EngineConfig
from cst_ray.dataio.actor_map import ActorStage
from cst_ray.stages.common import use_gpu


def actor_stage(cfg: CSTConfig, *, engine: EngineConfig | None = None, pool: ActorPoolConfig | None = None,
                tokens_per_row: int = 0, runs_engine: bool = True) -> ActorStage:
    """`cfg.generation`'s actor stage; `engine` (default the generation engine), `pool` and the
    rest as `ActorStage.from_generation` takes them."""
    return ActorStage.from_generation(cfg.generation, use_gpu=use_gpu(cfg), engine=engine, pool=pool,
                                      tokens_per_row=tokens_per_row, runs_engine=runs_engine)


def engine_actor_kwargs(cfg: CSTConfig, model_path: str, model_name: str, engine: EngineConfig | None = None) -> dict:
    """What every engine actor (`Responder`, `CritiqueChain`) is built with: the model, the engine
    settings, its threads and how its rows stream out."""
    pool = cfg.generation.pool
    return dict(model_path=model_path, model_name=model_name, engine=engine or cfg.generation.engine,
                threads=pool.threads, trust_remote_code=cfg.model.trust_remote_code,
                stream_rows=pool.stream_rows, rows_at_once=pool.rows_at_once)
