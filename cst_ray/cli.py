"""`cst-ray` command line: one subcommand per stage, plus `run` for all of them.

    cst-ray run --config configs/default.yaml [key.sub=value ...]
    cst-ray experiment --config configs/experiment.yaml
    cst-ray generate|pairs|train|evaluate --config FILE [overrides]
    cst-ray judge --judge refusal|classifier|finetuned|llm --input rows.jsonl --output labelled.jsonl [--labels FIELD]
    cst-ray train-judge [--kind finetuned|classifier] --output DIR [--pairs FILE ...]
    cst-ray chat --model DIR|alias [--system s1|s0|TEXT] [--prompt TEXT] [--backend hf|vllm]
    cst-ray check --config FILE [overrides]     # only the checks below; prints what they found

Errors a user can fix (bad config key, bad input row, missing stage output) print one line
naming the file, row and field or key, and exit with status 2 (`--debug`: with the traceback).
Every stage command first checks the config and all input files, models, judge and output
folders it will use (cst_ray.stages.preflight), before Ray starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from cst_ray.config.load import load_config
from cst_ray.config.precision import resolve_auto_precision
from cst_ray.config.schema import S1_DEFAULT, EngineConfig, ModelConfig, SystemPrompts
from cst_ray.core.errors import ConfigError, CSTError, InputDataError
from cst_ray.core.files import atomic_write_text
from cst_ray.core.log import attach_run_log, link_ray_session_logs, setup_logging
from cst_ray.core.run_lock import run_dir_lock
from cst_ray.data.pairs import read_pair_file
from cst_ray.data.sources import iter_rows
from cst_ray.evaluation.judge_training.classifier_train import train_classifier_judge
from cst_ray.evaluation.judge_training.finetuned_data import DEFAULT_AUDIT
from cst_ray.evaluation.judge_training.finetuned_fit import Recipe
from cst_ray.evaluation.judge_training.finetuned_train import train_finetuned_judge
from cst_ray.evaluation.judges.build import build_judge
from cst_ray.evaluation.metrics import binary_metrics, bootstrap_balanced_accuracy
from cst_ray.experiment import experiment_config, run_experiment
from cst_ray.generation.chat import open_session, repl
from cst_ray.models.resolve import check_model, resolve_model
from cst_ray.stages import runner as stages
from cst_ray.stages.judge_checks import check_default_judge, check_judge_folder
from cst_ray.stages.preflight import check_inputs
from cst_ray.stages.preflight_checks import check_writable_dir
from cst_ray.training.fit import log_training_estimate

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cst-ray", description="Configurable Safety Tuning on Ray")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("run", "all stages into one run directory"),
        ("generate", "Ray Data + vLLM: y0 -> critique -> revision"),
        ("pairs", "CST mirrored pairs and DPO-baseline pairs"),
        ("train", "Ray Train + DeepSpeed ZeRO-3 DPO training"),
        ("evaluate", "S1 / S0 of the base and tuned models on held-out prompts"),
        ("experiment", "base vs DPO baseline vs CST on the same data, with report.md/html"),
        ("check", "check the config and every input file, model and folder a run uses; start nothing"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", "-c", default=None, help="YAML config (default: built-in defaults)")
        sp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable); bare KEY=VALUE arguments work too")
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
        sp.add_argument("--reuse", action="store_true",
                        help="a finished stage made with other settings stops the run (default: it is redone)")
    j = sub.add_parser("judge", help="label rows {prompt, response} with a judge")
    j.add_argument("--judge", default="refusal", choices=["refusal", "classifier", "finetuned", "llm", "cascade"])
    j.add_argument("--input", required=True)
    j.add_argument("--output", required=True)
    j.add_argument("--labels", default="", help="0/1 field in the input (1 = safe) to score agreement against")
    j.add_argument("--judge-path", default="",
                   help="classifier, finetuned: a `train-judge` folder (default: the default folder under the "
                        "cache, trained beforehand with `cst-ray train-judge`)")
    j.add_argument("--train-pairs", action="append", default=[], metavar="FILE",
                   help="classifier, finetuned: pair files the judge was trained with (they pick its default folder)")
    j.add_argument("--model", default="smollm2-135m-instruct", help="llm: judge model (alias, folder or hub id)")
    j.add_argument("--backend", default="vllm", choices=["vllm", "hf"], help="llm: generation engine")
    j.add_argument("--question", default="help", choices=["help", "safety"],
                   help="llm, cascade: ask whether the answer gives real help (YES = unsafe) or is SAFE/UNSAFE")
    t = sub.add_parser("train-judge", help="train the finetuned (default) or classifier judge on shipped labels")
    t.add_argument("--kind", default="finetuned", choices=["finetuned", "classifier"],
                   help="finetuned: MiniLM cross-encoder, all weights trained; classifier: logistic regression")
    t.add_argument("--output", required=True, help="folder for the weights (safetensors) and judge.json")
    t.add_argument("--pairs", action="append", default=[], metavar="FILE",
                   help="pair file whose harmless rows add labels (under s1 chosen safe, rejected unsafe; "
                        "finetuned also reads s0 rows the other way round)")
    t.add_argument("--s1", default="", help="the safe system prompt of those rows (default: cst-ray's s1)")
    t.add_argument("--s0", default="", help="finetuned: the uncensored system prompt (default: cst-ray's s0)")
    t.add_argument("--heldout", type=float, default=0.25, help="classifier: held-out share")
    t.add_argument("--seed", type=int, default=0)
    _finetune_args(t)
    _chat_args(sub.add_parser("chat", help="talk to a model under s1, s0 or any system prompt (/system switches it)"))
    for sp in [p, *sub.choices.values()]:  # `--debug` before or after the subcommand
        sp.add_argument("--debug", action="store_true", default=False if sp is p else argparse.SUPPRESS,
                        help="show the traceback of an input or config error")
        sp.add_argument("--verbose", "-v", action="store_true", default=False if sp is p else argparse.SUPPRESS,
                        help="also show Ray's, vLLM's, DeepSpeed's and torch's output (otherwise in <run_dir>/logs)")
    return p


def _finetune_args(t: argparse.ArgumentParser) -> None:
    r = Recipe()
    t.add_argument("--folds", type=int, default=r.folds, help="finetuned: cross-validation folds (1 = none)")
    t.add_argument("--epochs", type=int, default=r.epochs, help="finetuned")
    t.add_argument("--lr", type=float, default=r.lr, help="finetuned")
    t.add_argument("--batch-size", type=int, default=r.batch_size, help="finetuned")
    t.add_argument("--max-length", type=int, default=r.max_length, help="finetuned: tokens of (request, answer)")
    t.add_argument("--limit", type=int, default=0, help="finetuned: a class-balanced subsample of this many rows")
    t.add_argument("--audit", default=str(DEFAULT_AUDIT),
                   help="finetuned: blind-labelled audit file, excluded from training and measured ('' = none)")


def _chat_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--model", required=True, help="alias, model folder (e.g. runs/x/train/cst/model) or hf://org/name")
    c.add_argument("--system", default="s1", help="s1 (safe), s0 (uncensored), none, or the system prompt's text")
    c.add_argument("--prompt", default=None, help="answer this one message, print the answer and exit")
    c.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    c.add_argument("--max-new-tokens", type=int, default=256)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    c.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    c.add_argument("--config", "-c", default=None, help="take s1 / s0 from this config's prompts section")


def _chat(args) -> int:
    prompts = load_config(args.config).prompts if args.config else SystemPrompts()
    session = open_session(args.model, system=args.system, prompts=prompts, backend=args.backend,
                           max_new_tokens=args.max_new_tokens, temperature=args.temperature, dtype=args.dtype)
    if args.prompt is not None:
        print(session.ask(args.prompt))
    else:
        repl(session)
    return 0


def _train_judge(args) -> dict:
    _check_judge_args(args)
    if args.kind == "classifier":
        card = train_classifier_judge(args.output, pair_files=args.pairs, s1=args.s1 or S1_DEFAULT,
                                      holdout=args.heldout, seed=args.seed)
        return {k: card[k] for k in ("train_rows", "heldout_rows", "heldout", "heldout_refusal_judge")}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = Recipe(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                    folds=args.folds, seed=args.seed)
    card = train_finetuned_judge(args.output, pair_files=args.pairs, s1=args.s1, s0=args.s0, audit=args.audit or None,
                                 recipe=recipe, limit=args.limit)
    cv = card["cv"] or {}
    return {"train_rows": card["train_rows"], "cv": {k: cv.get(k) for k in ("folds", "finetuned", "refusal_judge")},
            "audit": card.get("audit")}


def _check_judge_args(args) -> None:
    """`judge` and `train-judge`: their files and folders, before any model loads."""
    out = Path(args.output)
    check_writable_dir(str(out if args.command == "train-judge" else out.parent), "--output")
    if args.command == "judge" and out.is_dir():
        raise ConfigError(f"{out} is a folder; expected an output file", key="--output")
    pairs = args.pairs if args.command == "train-judge" else args.train_pairs
    for f in pairs:
        read_pair_file(f)
    if args.command == "judge" and args.judge in ("classifier", "finetuned"):  # a judge never trains itself
        if args.judge_path:
            check_judge_folder(args.judge, args.judge_path, "--judge-path", args.train_pairs)
        else:
            check_default_judge(args.judge, args.train_pairs, "--judge")
    if args.command == "judge" and args.judge in ("llm", "cascade"):
        check_model(args.model, "--model")


def _judge_file(args) -> dict:
    _check_judge_args(args)
    _, file, rows = iter_rows(args.input, kind="input file")
    data = []
    for row_no, obj in rows:
        for fld in ("prompt", "response"):
            if not isinstance(obj.get(fld), str):
                raise InputDataError("missing or non-string field", file=file, row=row_no, field=fld)
        if args.labels and str(obj.get(args.labels)) not in ("0", "1", "True", "False", "true", "false"):
            raise InputDataError("label must be 0 or 1", file=file, row=row_no, field=args.labels)
        data.append(obj)
    if not data:
        raise InputDataError("has no rows", file=file)
    judge_kwargs: dict = {"path": args.judge_path, "train_pairs": args.train_pairs}
    if args.judge in ("llm", "cascade"):
        judge_kwargs.update(model_path=resolve_model(ModelConfig(name_or_path=args.model), key="--model"),
                            engine=EngineConfig(backend=args.backend), question=args.question)
    verdicts = build_judge(args.judge, **judge_kwargs).judge([d["prompt"] for d in data], [d["response"] for d in data])
    atomic_write_text(args.output, "".join(json.dumps({**d, "safe": v.safe, "score": v.score}) + "\n"
                                           for d, v in zip(data, verdicts)))
    out = {"rows": len(data), "safe": sum(v.safe for v in verdicts)}
    if args.labels:
        gold, pred = [str(d[args.labels]).lower() in ("1", "true") for d in data], [v.safe for v in verdicts]
        m = binary_metrics(gold, pred)
        _, lo, hi = bootstrap_balanced_accuracy(gold, pred)
        out.update(agreement=m["accuracy"], balanced_accuracy=m["balanced_accuracy"],
                   balanced_accuracy_ci95=[round(lo, 4), round(hi, 4)], kappa=m["kappa"],
                   precision_safe=m["precision_safe"], recall_safe=m["recall_safe"],
                   recall_unsafe=m["recall_unsafe"], counts=m["counts"])
    return out


def _console(cfg, verbose: bool):
    """The console shows cst-ray's own lines; the rest goes to <run_dir>/logs (--verbose: both)."""
    attach_run_log(cfg.run_dir, verbose=verbose)
    if verbose:
        cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, log_to_driver=True))
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout holds the command's result only
    try:
        if args.command == "chat":
            return _chat(args)
        if args.command == "judge":
            print(json.dumps(_judge_file(args), indent=2))
            return 0
        if args.command == "train-judge":
            print(json.dumps(_train_judge(args), indent=2))
            return 0
        reuse = ["stale_stages=stop"] if args.reuse else []
        cfg = load_config(args.config, overrides=list(args.sets) + list(args.overrides) + reuse)
        if args.command == "experiment":
            cfg = experiment_config(cfg)
        cfg, precision = resolve_auto_precision(cfg)  # `auto` -> bf16 or fp32 for this CPU, before fingerprints
        checked = check_inputs(cfg, args.command)  # before Ray starts: bad input stops here
        if args.command == "check":
            log.info(precision)
            log_training_estimate(checked)
            print(json.dumps(checked, indent=2))
            return 0
        with run_dir_lock(cfg.run_dir):  # one driver per run directory
            return _run_command(args, _console(cfg, args.verbose), precision, checked)
    except CSTError as e:
        if args.debug:
            traceback.print_exc()
        print(f"cst-ray: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, always
        return 2


def _run_command(args, cfg, precision: str, checked: dict) -> int:
    """A stage command or `run` / `experiment`, under the run directory's lock."""
    log.info(precision)
    log_training_estimate(checked)
    if args.command == "experiment":
        result = run_experiment(cfg)
        cap = {m: {t: {k: v for k, v in s.items() if k != "correct"} for t, s in c.items()}
               for m, c in result["capability"].items()}
        print(json.dumps({"scores": result["scores"], "capability": cap, "report": result["report"]}, indent=2))
        return 0
    try:
        result = stages.run_all(cfg) if args.command == "run" else stages.run_stage(cfg, args.command)
    finally:
        link_ray_session_logs(cfg.run_dir)
    if args.command == "evaluate" or args.command == "run":
        print(json.dumps(result["scores"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
