"""One actor-stage config (issue 26): every actor stage runs through `ActorStage`, built once from
`generation`, and no stage calls `run_actor_map` with its own copy of the settings."""

import ast
from pathlib import Path

import pyarrow as pa

from cst_ray.config.schema import ActorPoolConfig, CSTConfig, EngineConfig
from cst_ray.core.ray_env import engine_env
from cst_ray.dataio import actor_map
from cst_ray.dataio.actor_map import ActorStage
from cst_ray.stages.actors import actor_stage, engine_actor_kwargs

STAGES = Path(__file__).resolve().parents[1] / "cst_ray" / "stages"


def test_the_stage_is_built_from_generation_and_passes_every_setting(monkeypatch):
    cfg = CSTConfig()
    g = cfg.generation
    g.rows_per_shard, g.progress_interval_s, g.engine.max_new_tokens = 7, 3.5, 77
    seen = {}
    monkeypatch.setattr(actor_map, "run_actor_map", lambda **kw: seen.update(kw) or "stats")
    stage = actor_stage(cfg)
    assert stage == ActorStage(pool=g.pool, rows_per_shard=7, progress_interval_s=3.5, tensor_parallel_size=1,
                               use_gpu=False, env_vars=tuple(sorted(engine_env(g.engine.backend).items())),
                               tokens_per_row=77)
    table = pa.table({"id": ["a"]})
    assert stage.run("probe", table, "out", dict, {"x": 1}, pa.schema([("id", pa.string())]),
                     done_key="prompt_id") == "stats"
    assert seen == dict(label="probe", table=table, out_dir="out", fn_cls=dict, fn_kwargs={"x": 1}, pool=g.pool,
                        schema=pa.schema([("id", pa.string())]), rows_per_shard=7, progress_interval_s=3.5,
                        tensor_parallel_size=1, use_gpu=False, reject_column=None, done_key="prompt_id",
                        env_vars=dict(engine_env(g.engine.backend)), tokens_per_row=77)


def test_overrides_for_an_eval_engine_a_smaller_pool_and_an_actor_without_engine():
    cfg = CSTConfig()
    cfg.generation.pool.num_gpus = 1
    short = EngineConfig(backend="hf", max_new_tokens=9)
    small = ActorPoolConfig(batch_size=4)
    st = actor_stage(cfg, engine=short, pool=small)
    assert st.use_gpu and st.pool is small and st.tokens_per_row == 9 and st.env_vars == ()  # hf: no override
    assert actor_stage(cfg, tokens_per_row=1, runs_engine=False).env_vars == ()
    kw = engine_actor_kwargs(cfg, "/m", "base", short)
    assert kw == dict(model_path="/m", model_name="base", engine=short, threads=cfg.generation.pool.threads,
                      trust_remote_code=False, stream_rows=cfg.generation.pool.stream_rows,
                      rows_at_once=cfg.generation.pool.rows_at_once)


def test_no_stage_calls_run_actor_map_itself():
    calls = []
    for f in sorted(STAGES.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "run_actor_map":
                calls.append(f"{f.name}:{node.lineno}")
    assert calls == []
    assert sum("actor_stage(" in f.read_text() for f in STAGES.glob("*.py")) >= 3  # generate, pairs, evaluate
