"""Stage 4, evaluate: answers under s1, s0 and an unseen s0, judged; S1, S0 and over-refusal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_table, atomic_write_text
from cst_ray.core.ray_env import engine_env
from cst_ray.data.sources import interleave, read_prompts
from cst_ray.dataio.actor_map import run_actor_map
from cst_ray.dataio.shards import read_shards
from cst_ray.evaluation.audit import audit_figures
from cst_ray.evaluation.metrics import safety_scores, wilson_share
from cst_ray.evaluation.variants import BENIGN_VARIANT, eval_variants, is_benign
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.common import stage_dir, use_gpu, write_stage_stats
from cst_ray.stages.prompts import prepare_prompts

log = logging.getLogger(__name__)


def seeded_order(table: pa.Table, seed: int) -> pa.Table:
    """`table`'s rows in a fixed order by the hash of (seed, id): the same subset for every model."""
    ids = table.column("id").to_pylist()
    return table.take(sorted(range(len(ids)), key=lambda i: hashlib.sha1(f"{seed}:{ids[i]}".encode()).hexdigest()))


def benign_prompts(cfg: CSTConfig) -> list[dict]:
    """A fixed, seeded subset of `eval.benign_source`."""
    if not cfg.eval.benign_limit:
        return []
    return seeded_order(read_prompts(cfg.eval.benign_source)[0], cfg.data.seed).slice(0, cfg.eval.benign_limit).to_pylist()


UNSEEN = "unseen_source:"  # variant prefix of the unseen-source rows: unseen_source:s1, unseen_source:s0


def unseen_prompts(cfg: CSTConfig) -> list[dict]:
    """`eval.unseen_limit` prompts of `eval.unseen_sources`, taken in turn from each source in a
    seeded order by id hash (the same for every model)."""
    if not cfg.eval.unseen_sources:
        return []
    tables = [seeded_order(read_prompts(source)[0], cfg.data.seed) for source in cfg.eval.unseen_sources]
    return interleave(tables).slice(0, cfg.eval.unseen_limit).to_pylist()


def _build_eval_judge(cfg: CSTConfig):
    from cst_ray.evaluation.judges.build import build_judge

    e = cfg.eval
    model_path = ""
    if e.judge in ("llm", "cascade"):
        model_path = resolve_model(dataclasses.replace(cfg.model, name_or_path=e.judge_model, chat_template="")
                                   if e.judge_model else cfg.model)
    return build_judge(e.judge, path=e.judge_path, train_pairs=e.judge_train_pairs, s1=cfg.prompts.s1,
                       s0=cfg.prompts.s0, model_path=model_path, engine=cfg.generation.engine,
                       trust_remote_code=cfg.model.trust_remote_code, question=e.judge_question)


def _flags(response: str) -> dict:
    from cst_ray.data.refusals import is_degenerate, is_refusal

    return {"refusal": is_refusal(response), "degenerate": is_degenerate(response)}


def _norm_prompt(text: str) -> str:
    return " ".join(text.lower().split())


def drop_seen_in_training(cfg: CSTConfig, held: list[dict]) -> tuple[list[dict], int]:
    """Held-out prompts minus any that a training pair uses (extra pair files can hold the same
    prompts as `data.source`, e.g. the author's set is built on AdvBench). -> (kept, dropped)."""
    pairs_dir = stage_dir(cfg, "pairs")
    seen: set[str] = set()
    for mode in ("cst", "dpo"):
        f = pairs_dir / f"{mode}.parquet"
        if f.is_file():
            seen.update(_norm_prompt(p) for p in pq.read_table(f, columns=["prompt"]).column("prompt").to_pylist())
    kept = [p for p in held if _norm_prompt(p["prompt"]) not in seen]
    if len(kept) < len(held):
        log.info(f"evaluate: {len(held) - len(kept)} held-out prompts dropped: they are training prompts of the pairs")
    return kept, len(held) - len(kept)


def evaluate(cfg: CSTConfig, models: dict[str, str] | None = None) -> dict:
    """Answer held-out prompts under each system prompt, judge, and score S1 / S0 per model."""
    from cst_ray.core.ray_env import init_ray

    prepare_prompts(cfg)
    out = stage_dir(cfg, "evaluate")
    held, seen = drop_seen_in_training(cfg, pq.read_table(stage_dir(cfg, "prompts") / "eval.parquet").to_pylist())
    if not held:
        raise StageError("no held-out prompts: raise data.eval_fraction (config key data.eval_fraction)"
                         + (f"; all {seen} were training prompts of the pairs" if seen else ""))
    models = models or _models_to_evaluate(cfg)
    benign = benign_prompts(cfg)
    unseen, unseen_seen = drop_seen_in_training(cfg, unseen_prompts(cfg)) if not cfg.policies else ([], 0)
    table = _eval_table(cfg, held, benign, unseen)
    init_ray(cfg.ray)
    judge = _build_eval_judge(cfg)
    per_model, gen_stats = {}, {}
    for name, path in models.items():
        answers, gen_stats[name] = _answer(cfg, name, path, table, out / "responses" / name)
        labelled, n_harmful = _label(judge, answers)
        atomic_write_table(pa.Table.from_pylist(labelled), out / f"labelled_{name}.parquet")
        if cfg.policies:
            per_model[name] = _policy_score(cfg, name, labelled, table)
            continue
        per_model[name] = _score(cfg, labelled, n_harmful, benign=bool(benign))
        log.info(f"evaluate[{name}]: " + "  ".join(f"{k}={s.fmt()}" for k, s in per_model[name]["scores"].items())
                 + (f"  over_refusal={per_model[name]['over_refusal'].fmt()}" if benign else "")
                 + "".join(f"  unseen_source_{k}={v.fmt()}" for k, v in per_model[name].get("unseen", {}).items()))
    report = (_policy_report(cfg, held, seen, per_model) if cfg.policies
              else _report(cfg, judge, held, seen, per_model, benign=bool(benign)))
    if unseen:
        report["unseen_source"] = {"sources": list(cfg.eval.unseen_sources), "n": len(unseen),
                                   "dropped_seen_in_training": unseen_seen,
                                   "scores": {m: {k: v.as_dict() for k, v in r["unseen"].items()}
                                              for m, r in per_model.items()}}
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


def _eval_table(cfg: CSTConfig, held: list[dict], benign: list[dict], unseen: list[dict] = ()) -> pa.Table:
    """One row per (held-out prompt, variant), plus the benign questions under s1."""
    if cfg.policies:
        return _policy_table(cfg, held, benign)
    rows = [dict(id=f"{p['id']}:{name}", prompt_id=p["id"], variant=name, system=system, prompt=p["prompt"])
            for p in held for name, system in eval_variants(cfg)]
    rows += [dict(id=f"{p['id']}:{UNSEEN}{name}", prompt_id=p["id"], variant=f"{UNSEEN}{name}", system=system,
                  prompt=p["prompt"]) for p in unseen for name, system in (("s1", cfg.prompts.s1),
                                                                            ("s0", cfg.prompts.s0))]
    rows += [dict(id=f"{p['id']}:{BENIGN_VARIANT}", prompt_id=p["id"], variant=BENIGN_VARIANT,
                  system=cfg.prompts.s1, prompt=p["prompt"]) for p in benign]
    return pa.Table.from_pylist(rows)


def _policy_table(cfg: CSTConfig, held: list[dict], benign: list[dict]) -> pa.Table:
    """`policies`: each held-out prompt under each policy's wordings (trained and unseen), with its
    category; the benign questions under each policy's first wording (`benign:<policy>`)."""
    from cst_ray.data.policies import policy_wordings
    from cst_ray.data.sources import source_category

    rows = [dict(id=f"{p['id']}:{variant}", prompt_id=p["id"], variant=variant, system=system, prompt=p["prompt"],
                 category=p.get("category") or source_category(p.get("source", "")))
            for p in held for variant, _, system in policy_wordings(cfg.policies)]
    rows += [dict(id=f"{p['id']}:benign:{pol.name}", prompt_id=p["id"], variant=f"benign:{pol.name}",
                  system=pol.prompts[0], prompt=p["prompt"], category="") for p in benign for pol in cfg.policies]
    return pa.Table.from_pylist(rows)


def _answer(cfg: CSTConfig, name: str, path: str, table: pa.Table, rdir: Path) -> tuple[list[dict], dict]:
    """The model's answers to `table`'s rows (resumable shards in `rdir`) -> (answers, stats)."""
    from cst_ray.generation.responder import RESPONSE_SCHEMA, Responder

    engine = dataclasses.replace(cfg.generation.engine, max_new_tokens=cfg.eval.max_new_tokens,
                                 temperature=cfg.eval.temperature)
    st = run_actor_map(label=f"evaluate:{name}", table=table, out_dir=rdir, fn_cls=Responder,
                       fn_kwargs=dict(model_path=path, model_name=name, engine=engine,
                                      threads=cfg.generation.pool.threads,
                                      trust_remote_code=cfg.model.trust_remote_code,
                                      stream_rows=cfg.generation.pool.stream_rows,
                                      rows_at_once=cfg.generation.pool.rows_at_once),
                       pool=cfg.generation.pool, schema=RESPONSE_SCHEMA,
                       rows_per_shard=cfg.generation.rows_per_shard,
                       progress_interval_s=cfg.generation.progress_interval_s,
                       tensor_parallel_size=cfg.generation.engine.tensor_parallel_size,
                       use_gpu=use_gpu(cfg), env_vars=engine_env(engine.backend), tokens_per_row=engine.max_new_tokens)
    wanted = set(table.column("id").to_pylist())
    return [a for a in read_shards(rdir).to_pylist() if a["id"] in wanted], st.as_dict()


def _label(judge, answers: list[dict]) -> tuple[list[dict], int]:
    """Answers with the judge's verdict and the text flags; harmful first, then benign.
    A degenerate answer (repetition) gives no help: never counted unsafe, reported apart.
    -> (labelled rows, number of harmful rows)."""
    harmful = [a for a in answers if not is_benign(a["variant"])]
    benign = [a for a in answers if is_benign(a["variant"])]
    verdicts = judge.judge([a["prompt"] for a in harmful], [a["response"] for a in harmful])
    labelled = [dict(a, **_flags(a["response"])) for a in harmful + benign]
    for r, v in zip(labelled, verdicts):
        r.update(safe=v.safe or r["degenerate"], score=v.score, judge_safe=v.safe)
    for r in labelled[len(harmful):]:
        r.update(safe=True, score=1.0, judge_safe=True)
    return labelled, len(harmful)


def _score(cfg: CSTConfig, labelled: list[dict], n_harmful: int, *, benign: bool) -> dict:
    """One model's S1/S0 scores, the refusal judge's reading (when another judge scores),
    degenerate shares per variant, and over-refusal on the benign questions."""
    from cst_ray.evaluation.judges.refusal import RefusalJudge

    harmful = [r for r in labelled[:n_harmful] if not r["variant"].startswith(UNSEEN)]
    unseen = [dict(r, variant=r["variant"].removeprefix(UNSEEN)) for r in labelled[:n_harmful]
              if r["variant"].startswith(UNSEEN)]
    out = {"scores": safety_scores(harmful)}
    if unseen:
        out["unseen"] = safety_scores(unseen)
    if cfg.eval.judge != "refusal":  # the pattern judge's reading, for comparison
        pattern = RefusalJudge().judge([a["prompt"] for a in harmful], [a["response"] for a in harmful])
        out["by_refusal"] = safety_scores([dict(r, safe=v.safe) for r, v in zip(harmful, pattern)])
    per_variant = Counter(r["variant"] for r in labelled)
    degenerate_n = Counter(r["variant"] for r in labelled if r["degenerate"])
    out["degenerate"] = {v: round(degenerate_n[v] / n, 4) for v, n in sorted(per_variant.items())}
    if benign:
        out["over_refusal"] = wilson_share([r["refusal"] for r in labelled[n_harmful:]])
    return out


def _policy_score(cfg: CSTConfig, name: str, labelled: list[dict], table: pa.Table) -> dict:
    """One model's policy matrix (evaluation.policy_matrix), logged as adherence per wording."""
    from cst_ray.evaluation.policy_matrix import policy_scores

    category = dict(zip(table.column("id").to_pylist(), table.column("category").to_pylist()))
    # refused: the refusal judge's verdict (a refusal that stays one, or degenerate text); with a
    # judge of harm, "safe" is not "refused", so the refusal patterns decide
    rows = [dict(r, category=category.get(r["id"], ""),
                 refused=bool(r["safe"]) if cfg.eval.judge == "refusal" else bool(r["refusal"] or r["degenerate"]))
            for r in labelled]
    scores = policy_scores(rows, cfg.policies)
    log.info(f"evaluate[{name}]: adherence " + "  ".join(
        f"{v}={s['value']:.2f} ({round(s['value'] * s['n'])}/{s['n']})" for v, s in scores["adherence"].items()))
    return scores


def _policy_report(cfg: CSTConfig, held: list[dict], seen: int, per_model: dict) -> dict:
    """eval.json for `policies`: the matrix per model, the wordings, the judge and its audit."""
    from cst_ray.data.policies import policy_wordings

    e = cfg.eval
    judge_model = (e.judge_model or cfg.model.name_or_path) if e.judge in ("llm", "cascade") else ""
    return {"judge": e.judge, "judge_audit": audit_figures(e.judge, judge_model, e.judge_question),
            "held_out_prompts": len(held), "held_out_dropped_seen_in_training": seen,
            "scores": {m: d["adherence"] for m, d in per_model.items()},  # adherence per wording
            "policies": {"wordings": {v: {"policy": n, "system": w} for v, n, w in policy_wordings(cfg.policies)},
                         "behaviours": {p.name: {"default": p.default, "answer": p.answer, "refuse": p.refuse}
                                        for p in cfg.policies},
                         "models": per_model}}


def _report(cfg: CSTConfig, judge, held: list[dict], seen: int, per_model: dict, *, benign: bool) -> dict:
    """eval.json: scores per model and variant, the judge and its card, over-refusal."""
    def as_dicts(scores: dict) -> dict:
        return {k: s.as_dict() for k, s in scores.items()}

    e = cfg.eval
    judge_model = (e.judge_model or cfg.model.name_or_path) if e.judge in ("llm", "cascade") else ""
    report = {"judge": e.judge, "judge_audit": audit_figures(e.judge, judge_model, e.judge_question),
              "held_out_prompts": len(held), "held_out_dropped_seen_in_training": seen,
              "variants": dict(eval_variants(cfg)), "scores": {m: as_dicts(r["scores"]) for m, r in per_model.items()}}
    if judge.card:
        report["judge_card"] = {"path": judge.path, "heldout": judge.card.get("heldout"),
                                "heldout_refusal_judge": judge.card.get("heldout_refusal_judge")}
    if judge.stats:
        report["judge_stats"] = dict(judge.stats)
    report["degenerate_share"] = {m: r["degenerate"] for m, r in per_model.items()}
    if any("by_refusal" in r for r in per_model.values()):
        report["scores_refusal_judge"] = {m: as_dicts(r["by_refusal"]) for m, r in per_model.items()}
    if benign:
        report["over_refusal"] = {"source": cfg.eval.benign_source, "system": "s1",
                                  "scores": {m: r["over_refusal"].as_dict() for m, r in per_model.items()}}
    return report
