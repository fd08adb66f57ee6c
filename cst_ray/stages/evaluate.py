"""Stage 4, evaluate: each model answers the evaluation set (`evaluation.eval_set`) on the actor
pool; its answers are labelled, scored and written to eval.json (`evaluation`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_table, atomic_write_text
from cst_ray.core.ray_env import init_ray
from cst_ray.dataio.shards import read_shards
from cst_ray.evaluation.eval_json import eval_json, policy_eval_json
from cst_ray.evaluation.eval_set import benign_prompts, eval_table, pair_file_prompts, unseen_prompts, without_prompts
from cst_ray.evaluation.extra_tasks import evaluate_extra_tasks
from cst_ray.evaluation.judges.base import Judge
from cst_ray.evaluation.judges.build import build_judge
from cst_ray.evaluation.labelling import label_answers
from cst_ray.evaluation.scoring import score_model
from cst_ray.generation.responder import RESPONSE_SCHEMA, Responder
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.actors import actor_stage, engine_actor_kwargs
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.prompts import prepare_prompts


def _build_eval_judge(cfg: CSTConfig) -> Judge:
    """`eval.judge`; the llm and cascade judges run `eval.judge_model` (default: the policy's model)."""
    e = cfg.eval
    judge_model = dataclasses.replace(cfg.model, name_or_path=e.judge_model, chat_template="") if e.judge_model \
        else cfg.model
    model_path = resolve_model(judge_model) if e.judge in ("llm", "cascade") else ""
    return build_judge(e.judge, path=e.judge_path, train_pairs=e.judge_train_pairs, s1=cfg.prompts.s1,
                       s0=cfg.prompts.s0, model_path=model_path, engine=cfg.generation.engine,
                       trust_remote_code=cfg.model.trust_remote_code, question=e.judge_question)


def evaluate(cfg: CSTConfig, models: dict[str, str] | None = None) -> dict:
    """Answer held-out prompts under each system prompt, judge, and score S1 / S0 per model."""
    prepare_prompts(cfg)
    out = stage_dir(cfg, "evaluate")
    trained = pair_file_prompts([stage_dir(cfg, "pairs") / f"{mode}.parquet" for mode in ("cst", "dpo")])
    held, seen = without_prompts(pq.read_table(stage_dir(cfg, "prompts") / "eval.parquet").to_pylist(), trained)
    if not held:
        raise StageError("no held-out prompts: raise data.eval_fraction (config key data.eval_fraction)"
                         + (f"; all {seen} were training prompts of the pairs" if seen else ""))
    models = models or _models_to_evaluate(cfg)
    benign = benign_prompts(cfg)
    unseen, unseen_seen = without_prompts(unseen_prompts(cfg), trained) if not cfg.policies else ([], 0)
    table = eval_table(cfg, held, benign, unseen)
    init_ray(cfg.ray)
    judge = _build_eval_judge(cfg)
    per_model, gen_stats = {}, {}
    for name, path in models.items():
        answers, gen_stats[name] = _answer(cfg, name, path, table, out / "responses" / name)
        labelled, n_harmful = label_answers(judge, answers)
        atomic_write_table(pa.Table.from_pylist(labelled), out / f"labelled_{name}.parquet")
        per_model[name] = score_model(cfg, name, labelled, n_harmful, table, benign=bool(benign))
    report = (policy_eval_json(cfg, held, seen, per_model) if cfg.policies
              else eval_json(cfg, judge, held, seen, per_model, benign=bool(benign), unseen=(len(unseen), unseen_seen)))
    report |= evaluate_extra_tasks(cfg, models)  # {} unless pairs.extra_tasks_eval_fraction holds rows out
    atomic_write_text(out / "eval.json", json.dumps(report, indent=2) + "\n")
    write_stage_stats(cfg, "evaluate", {"generation": gen_stats, "models": list(models), "benign_prompts": len(benign)})
    return report


def _models_to_evaluate(cfg: CSTConfig) -> dict[str, str]:
    """The base model and every trained method's export: {name: model folder}."""
    models = {"base": resolve_model(cfg.model)}
    for method in cfg.train.methods:
        mdir = stage_dir(cfg, "train") / method / "model"
        if (mdir / "config.json").is_file():
            models[method] = str(mdir.resolve())
    return models


def _answer(cfg: CSTConfig, name: str, path: str, table: pa.Table, rdir: Path) -> tuple[list[dict], dict]:
    """The model's answers to `table`'s rows (resumable shards in `rdir`) -> (answers, stats)."""
    engine = dataclasses.replace(cfg.generation.engine, max_new_tokens=cfg.eval.max_new_tokens,
                                 temperature=cfg.eval.temperature)
    st = actor_stage(cfg, engine=engine).run(f"evaluate:{name}", table, rdir, Responder,
                                              engine_actor_kwargs(cfg, path, name, engine), RESPONSE_SCHEMA)
    wanted = set(table.column("id").to_pylist())
    return [a for a in read_shards(rdir).to_pylist() if a["id"] in wanted], st.as_dict()


