"""The CST stages. Each reads the previous stage's files in the run directory and writes its
own plus a `stats.json`, which is written last and marks the stage complete.

    <run_dir>/
      config.yaml                       resolved config
      prompts/{train,eval}.parquet      validated prompts, split by id; stats.json
      generate/generations/part-*.parquet   y0 -> critique -> y1 rows; rejected_rows/; stats.json
      pairs/{cst,dpo}.parquet           TRL-style pairs; stats.json
      train/<method>/model/             merged HF export (+ checkpoints/, metrics.jsonl); stats.json
      evaluate/responses/<model>/       answers under s1, s0, unseen s0; eval.json; stats.json
      summary.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig, dump_yaml
from cst_ray.data.pairs import augment_s0, mirror_pairs, read_pair_file, to_table
from cst_ray.data.sources import read_prompts, split_by_id
from cst_ray.dataio.actor_map import read_shards, run_actor_map, write_stats
from cst_ray.core.errors import StageError
from cst_ray.models.resolve import resolve_model
from cst_ray.core.ray_env import engine_env
from cst_ray.core.storage import join as storage_join

STAGES = ("generate", "pairs", "train", "evaluate")


def _log(msg: str) -> None:
    print(f"[cst-ray] {msg}", file=sys.stderr, flush=True)


def stage_dir(cfg: CSTConfig, name: str) -> Path:
    return Path(cfg.run_dir) / name


def is_complete(cfg: CSTConfig, name: str) -> bool:
    return (stage_dir(cfg, name) / "stats.json").is_file()


def _use_gpu(cfg: CSTConfig) -> bool:
    return cfg.generation.pool.num_gpus > 0


# ----------------------------------------------------------------------------- prompts


def prepare_prompts(cfg: CSTConfig) -> dict:
    """Validate the prompt source and split it by id into train / held-out eval."""
    out = stage_dir(cfg, "prompts")
    if (out / "stats.json").is_file():
        return json.loads((out / "stats.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    table, sstats = read_prompts(cfg.data.source, prompt_field=cfg.data.prompt_field, id_field=cfg.data.id_field)
    train, held = split_by_id(table, cfg.data.eval_fraction, cfg.data.seed)
    if cfg.data.limit:
        train = train.slice(0, cfg.data.limit)
    if cfg.data.eval_limit:
        held = held.slice(0, cfg.data.eval_limit)
    pq.write_table(train, out / "train.parquet")
    pq.write_table(held, out / "eval.parquet")
    stats = {"source": cfg.data.source, **sstats.as_dict(), "train_prompts": train.num_rows,
             "eval_prompts": held.num_rows, "eval_fraction": cfg.data.eval_fraction,
             "not_used_by_limits": table.num_rows - train.num_rows - held.num_rows}
    write_stats(out / "stats.json", stats)
    _log(f"prompts: {train.num_rows} train / {held.num_rows} held-out from {cfg.data.source} "
         f"(skipped: {sstats.skipped or 'none'})")
    return stats


# ----------------------------------------------------------------------------- generate


def generate(cfg: CSTConfig) -> dict:
    """Ray Data -> vLLM actor pool: y0 under s0 -> critique -> revision y1."""
    from cst_ray.generation.critique import GENERATION_SCHEMA, CritiqueChain
    from cst_ray.core.ray_env import init_ray

    pstats = prepare_prompts(cfg)
    out = stage_dir(cfg, "generate")
    table = pq.read_table(stage_dir(cfg, "prompts") / "train.parquet")
    init_ray(cfg.ray)
    model_path = resolve_model(cfg.model)
    g = cfg.generation
    critic_path = resolve_model(dataclasses.replace(cfg.model, name_or_path=g.critic.name_or_path,
                                                    trust_remote_code=g.critic.trust_remote_code)) \
        if g.critic.name_or_path else ""
    t0 = time.time()
    stats = run_actor_map(
        label="generate",
        table=table,
        out_dir=out / "generations",
        fn_cls=CritiqueChain,
        fn_kwargs=dict(model_path=model_path, model_name=cfg.model.name_or_path, engine=g.engine,
                       critique=g.critique, filters=g.filters, system_s0=cfg.prompts.s0,
                       threads=g.pool.threads, trust_remote_code=cfg.model.trust_remote_code,
                       crash_marker=str(out / ".crash-once") if g.crash_once else "",
                       critic=g.critic, critic_path=critic_path),
        pool=g.pool,
        schema=GENERATION_SCHEMA,
        rows_per_shard=g.rows_per_shard,
        progress_interval_s=g.progress_interval_s,
        tensor_parallel_size=g.engine.tensor_parallel_size,
        use_gpu=_use_gpu(cfg),
        reject_column="reject_reason",
        env_vars=engine_env(g.engine.backend),
        done_key="prompt_id",
    )
    d = stats.as_dict()
    if cfg.data.benign_sources:
        d["benign"] = _answer_benign(cfg, model_path, out / "benign")
    d.update(prompts=pstats, engine=g.engine.backend, model=cfg.model.name_or_path,
             critic=g.critic.name_or_path or "self", stage_wall_s=round(time.time() - t0, 2))
    write_stats(out / "stats.json", d)
    _log(f"generate: {stats.rows_out} kept, {stats.rows_rejected} rejected {stats.rejected_by_reason}, "
         f"{d['generated_tokens_per_s']} generated tok/s")
    return d


def _answer_benign(cfg: CSTConfig, model_path: str, out: Path) -> dict:
    """The policy answers `data.benign_sources` under s1 (the helpful side of benign pairs)."""
    from cst_ray.generation.critique import RESPONSE_SCHEMA, Responder

    rows, read = [], {}
    for source in cfg.data.benign_sources:
        table, st = read_prompts(source, limit=cfg.data.benign_limit)
        read[source] = st.as_dict()
        rows += [dict(id=f"{r['id']}:benign", prompt_id=r["id"], variant="benign_s1", system=cfg.prompts.s1,
                      prompt=r["prompt"]) for r in table.to_pylist()]
    g = cfg.generation
    stats = run_actor_map(label="generate:benign", table=pa.Table.from_pylist(rows), out_dir=out, fn_cls=Responder,
                          fn_kwargs=dict(model_path=model_path, model_name=cfg.model.name_or_path, engine=g.engine,
                                         threads=g.pool.threads, trust_remote_code=cfg.model.trust_remote_code),
                          pool=g.pool, schema=RESPONSE_SCHEMA, rows_per_shard=g.rows_per_shard,
                          progress_interval_s=g.progress_interval_s,
                          tensor_parallel_size=g.engine.tensor_parallel_size, use_gpu=_use_gpu(cfg),
                          env_vars=engine_env(g.engine.backend))
    return {**stats.as_dict(), "read": read}


# ----------------------------------------------------------------------------- pairs


def build_pairs(cfg: CSTConfig) -> dict:
    """CST mirrored pairs and the DPO-baseline (s1 only) pairs, plus extra configurable tasks."""
    out = stage_dir(cfg, "pairs")
    gens = None
    if cfg.pairs.use_generated:
        gens = read_shards(stage_dir(cfg, "generate") / "generations", columns=["id", "prompt", "y0", "y1"])
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
    extra = extra + benign
    extra_dpo = extra_dpo + benign
    cst_pairs = mirror_pairs(rows, s1=cfg.prompts.s1, s0=cfg.prompts.s0, mode="cst") + extra
    if cfg.pairs.s0_augment:
        cst_pairs, stats["cst_s0_wordings"] = augment_s0(cst_pairs, s0=cfg.prompts.s0, wordings=cfg.pairs.s0_augment,
                                                         seed=cfg.data.seed)
    tables = {"cst": to_table(cst_pairs),
              "dpo": to_table(mirror_pairs(rows, s1=cfg.prompts.s1, s0=cfg.prompts.s0, mode="dpo") + extra_dpo)}
    if cfg.pairs.reference_logps:
        tables, stats["reference_logps"] = _add_reference_logps(cfg, tables, out)
    for mode, table in tables.items():
        pq.write_table(table, out / f"{mode}.parquet")
        stats[f"{mode}_pairs"] = table.num_rows
    write_stats(out / "stats.json", stats)
    _log(f"pairs: {stats['cst_pairs']} CST pairs, {stats['dpo_pairs']} DPO-baseline pairs")
    return stats


def _benign_pairs(cfg: CSTConfig, generations: list[dict]) -> tuple[list[dict], dict]:
    """(s1, benign question, the policy's answer > a refusal) for every usable benign answer."""
    from cst_ray.data.pairs import benign_pairs
    from cst_ray.evaluation.judges.base import is_degenerate, is_refusal

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
    return "bfloat16" if cfg.train.precision == "bf16" else "float32"


def _add_reference_logps(cfg: CSTConfig, tables: dict[str, pa.Table], out: Path) -> tuple[dict, dict]:
    """Ray Data stage: reference log-probs for every pair (the CST set holds every DPO pair)."""
    import dataclasses as dc

    from cst_ray.training.reference_pass import REF_SCHEMA, ReferenceLogProbs
    from cst_ray.core.ray_env import init_ray

    init_ray(cfg.ray)
    union = pa.concat_tables(list(tables.values())).to_pylist()
    uniq = pa.Table.from_pylist(list({r["id"]: r for r in union}.values()))
    pool = dc.replace(cfg.generation.pool, batch_size=min(cfg.generation.pool.batch_size, 64))
    st = run_actor_map(label="reference", table=uniq, out_dir=out / "reference_logps", fn_cls=ReferenceLogProbs,
                       fn_kwargs=dict(model_path=resolve_model(cfg.model), max_length=cfg.train.max_length,
                                      min_response_tokens=cfg.train.min_response_tokens,
                                      dtype=reference_dtype(cfg), threads=pool.threads,
                                      trust_remote_code=cfg.model.trust_remote_code, packed=cfg.train.packing),
                       pool=pool, schema=REF_SCHEMA, rows_per_shard=cfg.generation.rows_per_shard,
                       progress_interval_s=cfg.generation.progress_interval_s, use_gpu=_use_gpu(cfg))
    ref = read_shards(out / "reference_logps", columns=["id", "ref_chosen_logps", "ref_rejected_logps"])
    by_id = {r["id"]: r for r in ref.to_pylist()}
    result = {}
    for mode, t in tables.items():
        ids = t.column("id").to_pylist()
        t = t.append_column("ref_chosen_logps", pa.array([by_id[i]["ref_chosen_logps"] for i in ids], pa.float64()))
        result[mode] = t.append_column("ref_rejected_logps", pa.array([by_id[i]["ref_rejected_logps"] for i in ids], pa.float64()))
    missing = sum(r["ref_chosen_logps"] is None for r in by_id.values())
    return result, {**st.as_dict(), "pairs": len(by_id), "not_fitting_max_length": missing}


# ----------------------------------------------------------------------------- train


def train(cfg: CSTConfig, methods: list[str] | None = None) -> dict:
    """Ray Train + DeepSpeed DPO on each pair set in `train.methods`."""
    from cst_ray.core.ray_env import init_ray
    from cst_ray.training.driver import run_training

    init_ray(cfg.ray)
    model_path = resolve_model(cfg.model)
    out = stage_dir(cfg, "train")
    all_stats = {}
    for method in methods or cfg.train.methods:
        mdir = out / method
        if (mdir / "stats.json").is_file():
            all_stats[method] = json.loads((mdir / "stats.json").read_text())
            continue
        pairs_file = stage_dir(cfg, "pairs") / f"{method}.parquet"
        if not pairs_file.is_file():
            raise StageError(f"{pairs_file} not found; run `cst-ray pairs` first")
        pairs = pq.read_table(pairs_file).to_pylist()
        t0 = time.time()
        ckpt = storage_join(cfg.train.storage_path, method) if cfg.train.storage_path else ""
        st = run_training(cfg, pairs, model_path=model_path, out_dir=mdir, method=method.upper(), storage_path=ckpt)
        st["wall_s"] = round(time.time() - t0, 2)
        write_stats(mdir / "stats.json", st)
        fm = st["final_metrics"]
        _log(f"train[{method}]: {st['total_steps']} steps, loss {fm.get('loss', float('nan')):.4f}, "
             f"margin {fm.get('rewards/margins', float('nan')):.3f}, {st['wall_s']:.0f}s")
        all_stats[method] = st
    write_stats(out / "stats.json", all_stats)
    return all_stats


# ----------------------------------------------------------------------------- evaluate


def eval_variants(cfg: CSTConfig) -> list[tuple[str, str]]:
    """(variant name, system prompt): s1, the training s0, and unseen s0 wordings."""
    v = [("s1", cfg.prompts.s1), ("s0", cfg.prompts.s0)]
    v += [(f"s0_unseen_{i}", s) for i, s in enumerate(cfg.prompts.s0_unseen, start=1)]
    return v


BENIGN_VARIANT = "benign_s1"  # benign questions under s1, for over-refusal


def benign_prompts(cfg: CSTConfig) -> list[dict]:
    """A fixed, seeded subset of `eval.benign_source` (by id hash, so the same for every model)."""
    if not cfg.eval.benign_limit:
        return []
    table, _ = read_prompts(cfg.eval.benign_source)
    ids = table.column("id").to_pylist()
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha1(f"{cfg.data.seed}:{ids[i]}".encode()).hexdigest())
    return table.take(order[:cfg.eval.benign_limit]).to_pylist()


def _build_eval_judge(cfg: CSTConfig):
    from cst_ray.evaluation.judges.base import build_judge

    e = cfg.eval
    model_path = ""
    if e.judge == "llm":
        model_path = resolve_model(dataclasses.replace(cfg.model, name_or_path=e.judge_model) if e.judge_model else cfg.model)
    return build_judge(e.judge, path=e.judge_path, train_pairs=e.judge_train_pairs, s1=cfg.prompts.s1,
                       s0=cfg.prompts.s0, model_path=model_path, engine=cfg.generation.engine, trust_remote_code=cfg.model.trust_remote_code)


def _flags(response: str) -> dict:
    from cst_ray.evaluation.judges.base import is_degenerate, is_refusal

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
        _log(f"evaluate: {len(held) - len(kept)} held-out prompts dropped: they are training prompts of the pairs")
    return kept, len(held) - len(kept)


def evaluate(cfg: CSTConfig, models: dict[str, str] | None = None) -> dict:
    """Answer held-out prompts under each system prompt, judge, and score S1 / S0 per model."""
    from cst_ray.evaluation.judges.base import RefusalJudge
    from cst_ray.evaluation.metrics import bootstrap_share, safety_scores
    from cst_ray.generation.critique import RESPONSE_SCHEMA, Responder
    from cst_ray.core.ray_env import init_ray

    prepare_prompts(cfg)
    out = stage_dir(cfg, "evaluate")
    held, seen = drop_seen_in_training(cfg, pq.read_table(stage_dir(cfg, "prompts") / "eval.parquet").to_pylist())
    if not held:
        raise StageError("no held-out prompts: raise data.eval_fraction (config key data.eval_fraction)"
                         + (f"; all {seen} were training prompts of the pairs" if seen else ""))
    if models is None:
        models = {"base": resolve_model(cfg.model)}
        for method in cfg.train.methods:
            mdir = stage_dir(cfg, "train") / method / "model"
            if (mdir / "config.json").is_file():
                models[method] = str(mdir.resolve())
    rows = [dict(id=f"{p['id']}:{name}", prompt_id=p["id"], variant=name, system=system, prompt=p["prompt"])
            for p in held for name, system in eval_variants(cfg)]
    benign = benign_prompts(cfg)
    rows += [dict(id=f"{p['id']}:{BENIGN_VARIANT}", prompt_id=p["id"], variant=BENIGN_VARIANT,
                  system=cfg.prompts.s1, prompt=p["prompt"]) for p in benign]
    table, wanted = pa.Table.from_pylist(rows), {r["id"] for r in rows}
    init_ray(cfg.ray)
    judge = _build_eval_judge(cfg)
    engine = dataclasses.replace(cfg.generation.engine, max_new_tokens=cfg.eval.max_new_tokens,
                                 temperature=cfg.eval.temperature)
    results, by_refusal, over_refusal, degenerate, gen_stats = {}, {}, {}, {}, {}
    for name, path in models.items():
        rdir = out / "responses" / name
        st = run_actor_map(label=f"evaluate:{name}", table=table, out_dir=rdir, fn_cls=Responder,
                           fn_kwargs=dict(model_path=path, model_name=name, engine=engine,
                                          threads=cfg.generation.pool.threads,
                                          trust_remote_code=cfg.model.trust_remote_code),
                           pool=cfg.generation.pool, schema=RESPONSE_SCHEMA,
                           rows_per_shard=cfg.generation.rows_per_shard,
                           progress_interval_s=cfg.generation.progress_interval_s,
                           tensor_parallel_size=cfg.generation.engine.tensor_parallel_size,
                           use_gpu=_use_gpu(cfg), env_vars=engine_env(engine.backend))
        gen_stats[name] = st.as_dict()
        answers = [a for a in read_shards(rdir).to_pylist() if a["id"] in wanted]
        harmful = [a for a in answers if a["variant"] != BENIGN_VARIANT]
        benign_answers = [a for a in answers if a["variant"] == BENIGN_VARIANT]
        verdicts = judge.judge([a["prompt"] for a in harmful], [a["response"] for a in harmful])
        labelled = [dict(a, **_flags(a["response"])) for a in harmful + benign_answers]
        # a degenerate answer (repetition) gives no help: never counted as unsafe, reported apart
        for r, v in zip(labelled, verdicts):
            r.update(safe=v.safe or r["degenerate"], score=v.score, judge_safe=v.safe)
        for r in labelled[len(harmful):]:
            r.update(safe=True, score=1.0, judge_safe=True)
        pq.write_table(pa.Table.from_pylist(labelled), out / f"labelled_{name}.parquet")
        scores = safety_scores(labelled[:len(harmful)], samples=cfg.eval.bootstrap_samples)
        results[name] = {k: s.as_dict() for k, s in scores.items()}
        if cfg.eval.judge != "refusal":  # the pattern judge's reading, for comparison
            pattern = RefusalJudge().judge([a["prompt"] for a in harmful], [a["response"] for a in harmful])
            by_refusal[name] = {k: s.as_dict() for k, s in safety_scores(
                [dict(r, safe=v.safe) for r, v in zip(labelled, pattern)], samples=cfg.eval.bootstrap_samples).items()}
        per_variant = Counter(r["variant"] for r in labelled)
        degenerate_n = Counter(r["variant"] for r in labelled if r["degenerate"])
        degenerate[name] = {v: round(degenerate_n[v] / n, 4) for v, n in sorted(per_variant.items())}
        if benign:
            over_refusal[name] = bootstrap_share([r["refusal"] for r in labelled[len(harmful):]],
                                                 cfg.eval.bootstrap_samples)
        _log(f"evaluate[{name}]: " + "  ".join(f"{k}={s.fmt()}" for k, s in scores.items())
             + (f"  over_refusal={over_refusal[name].fmt()}" if benign else ""))
    report = {"judge": cfg.eval.judge, "held_out_prompts": len(held), "held_out_dropped_seen_in_training": seen,
              "variants": dict(eval_variants(cfg)), "scores": results}
    if getattr(judge, "card", None):
        report["judge_card"] = {"path": judge.path, "heldout": judge.card.get("heldout"),
                                "heldout_refusal_judge": judge.card.get("heldout_refusal_judge")}
    if getattr(judge, "stats", None):
        report["judge_stats"] = judge.stats
    report["degenerate_share"] = degenerate
    if by_refusal:
        report["scores_refusal_judge"] = by_refusal
    if benign:
        report["over_refusal"] = {"source": cfg.eval.benign_source, "system": "s1",
                                  "scores": {m: s.as_dict() for m, s in over_refusal.items()}}
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    write_stats(out / "stats.json", {"generation": gen_stats, "models": list(models), "benign_prompts": len(benign)})
    return report


# ----------------------------------------------------------------------------- run


def aims_table(cfg: CSTConfig, report: dict) -> list[dict]:
    """Each aim of `eval.aims` against the tuned model's figure (the first trained method),
    with the base model's beside it."""
    a = cfg.eval.aims
    scores = report["scores"]
    tuned = next((m for m in cfg.train.methods if m in scores), None)
    checks = [("S1", "S1", ">=", a.s1_min), ("S0 (training wording)", "S0", ">=", a.s0_min)]
    checks += [(f"S0 (unseen wording {v.rsplit('_', 1)[-1]})", v, ">=", a.s0_unseen_min)
               for v in next(iter(scores.values())) if v.startswith("S0_unseen")]
    over = report.get("over_refusal", {}).get("scores", {})
    rows = []
    for label, key, op, target in checks + [("over-refusal", "over_refusal", "<=", a.over_refusal_max)]:
        table = over if key == "over_refusal" else {m: s[key] for m, s in scores.items()}
        value = table.get(tuned, {}).get("value") if tuned else None
        met = value is not None and (value >= target if op == ">=" else value <= target)
        rows.append(dict(aim=label, target=f"{op} {target:g}", tuned=value, base=table.get("base", {}).get("value"),
                         met=met))
    return rows


def _aims_markdown(cfg: CSTConfig, report: dict) -> list[str]:
    rows = aims_table(cfg, report)
    tuned = next((m for m in cfg.train.methods if m in report["scores"]), "tuned")

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    met = sum(r["met"] for r in rows)
    lines = [f"## Aims: {met} of {len(rows)} met", "", f"| aim | target | {tuned} | base | met |", "|---|---|---|---|---|"]
    lines += [f"| {r['aim']} | {r['target']} | {fmt(r['tuned'])} | {fmt(r['base'])} | {'yes' if r['met'] else 'no'} |"
              for r in rows]
    return lines + [""]


def summary_markdown(cfg: CSTConfig, report: dict, stage_times: dict) -> str:
    variants = [k for k in next(iter(report["scores"].values()))]
    lines = [f"# cst-ray run: `{cfg.run_dir}`", "",
             f"Model `{cfg.model.name_or_path}`, judge `{report['judge']}`, "
             f"{report['held_out_prompts']} held-out prompts. S1 = share safe under s1; "
             f"S0 = share not safe under an uncensored prompt. Value [95% bootstrap CI] (n).", "",
             "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for model, scores in report["scores"].items():
        cells = [f"{scores[v]['value']:.2f} [{scores[v]['ci95'][0]:.2f}, {scores[v]['ci95'][1]:.2f}] (n={scores[v]['n']})"
                 for v in variants]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [""] + _aims_markdown(cfg, report)
    lines += ["System prompts:", ""] + [f"- `{k}`: {v}" for k, v in report["variants"].items()]
    lines += ["", "| stage | wall time (s) |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in stage_times.items()]
    return "\n".join(lines) + "\n"


def fetch_stage(cfg: CSTConfig, name: str) -> bool:
    """Fetch a stage that is complete at `run_uri` but missing locally (resume elsewhere)."""
    from cst_ray.core import storage

    if not cfg.run_uri or is_complete(cfg, name) or not storage.exists(storage.join(cfg.run_uri, name, "stats.json")):
        return False
    n = storage.fetch_dir(storage.join(cfg.run_uri, name), str(stage_dir(cfg, name)))
    _log(f"{name}: fetched {n} files from {storage.join(cfg.run_uri, name)}")
    return True


def upload_stage(cfg: CSTConfig, name: str) -> None:
    """Mirror a finished stage to `run_uri` (training checkpoints have their own storage)."""
    from cst_ray.core import storage

    if cfg.run_uri and stage_dir(cfg, name).is_dir():
        n = storage.copy_dir(str(stage_dir(cfg, name)), storage.join(cfg.run_uri, name), skip=("checkpoints",))
        _log(f"{name}: uploaded {n} files to {storage.join(cfg.run_uri, name)}")


def run_all(cfg: CSTConfig) -> dict:
    """All stages into one run directory; stages already complete there (or at `run_uri`)
    are reused."""
    from cst_ray.core import storage

    if cfg.run_uri and not cfg.train.storage_path:
        # Checkpoints next to the mirrored run, so a killed job resumes from the bucket.
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, storage_path=storage.join(cfg.run_uri, "checkpoints")))
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(dump_yaml(cfg))
    times = {}
    fetch_stage(cfg, "prompts")
    for name, fn in (("generate", generate), ("pairs", build_pairs), ("train", train), ("evaluate", evaluate)):
        if name == "generate" and not cfg.pairs.use_generated:
            continue
        fetch_stage(cfg, name)
        if is_complete(cfg, name):
            _log(f"{name}: complete in {stage_dir(cfg, name)}, reused")
            times[name] = 0.0
            continue
        t0 = time.time()
        fn(cfg)
        times[name] = time.time() - t0
        for done in ("prompts", name):  # prompts/ is written by whichever stage runs first
            upload_stage(cfg, done)
    report = json.loads((stage_dir(cfg, "evaluate") / "eval.json").read_text())
    (run / "summary.md").write_text(summary_markdown(cfg, report, times))
    for r in aims_table(cfg, report):
        _log(f"aim {r['aim']} {r['target']}: {r['tuned'] if r['tuned'] is None else round(r['tuned'], 2)} "
             f"(base {r['base'] if r['base'] is None else round(r['base'], 2)}) -> {'met' if r['met'] else 'NOT met'}")
    upload_run_files(cfg)
    _log(f"summary: {run / 'summary.md'}")
    return report


def upload_run_files(cfg: CSTConfig) -> None:
    """Mirror what is in the run directory outside the stage folders (config, summary, report)."""
    from cst_ray.core import storage

    if cfg.run_uri:
        storage.copy_dir(str(cfg.run_dir), cfg.run_uri, skip=("prompts", *STAGES))
