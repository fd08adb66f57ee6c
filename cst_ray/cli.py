"""`cst-ray` command line: one subcommand per stage, plus `run` for all of them.

    cst-ray run --config configs/default.yaml [key.sub=value ...]
    cst-ray experiment --config configs/experiment.yaml
    cst-ray generate|pairs|train|evaluate --config FILE [overrides]
    cst-ray judge --judge refusal --input rows.jsonl --output labelled.jsonl [--labels FIELD]

Errors a user can fix (bad config key, bad input row, missing stage output) print one line
naming the file, row and field or key, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from cst_ray.errors import CSTError


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
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", "-c", default=None, help="YAML config (default: built-in defaults)")
        sp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable); bare KEY=VALUE arguments work too")
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    j = sub.add_parser("judge", help="label rows {prompt, response} with a judge")
    j.add_argument("--judge", default="refusal")
    j.add_argument("--input", required=True)
    j.add_argument("--output", required=True)
    j.add_argument("--labels", default="", help="0/1 field in the input (1 = safe) to score agreement against")
    return p


def _judge_file(args) -> dict:
    from cst_ray.data.sources import iter_rows
    from cst_ray.errors import InputDataError
    from cst_ray.evaluation.judges import build_judge

    _, file, rows = iter_rows(args.input)
    data = []
    for row_no, obj in rows:
        for fld in ("prompt", "response"):
            if not isinstance(obj.get(fld), str):
                raise InputDataError("missing or non-string field", file=file, row=row_no, field=fld)
        if args.labels and str(obj.get(args.labels)) not in ("0", "1", "True", "False", "true", "false"):
            raise InputDataError("label must be 0 or 1", file=file, row=row_no, field=args.labels)
        data.append(obj)
    verdicts = build_judge(args.judge).judge([d["prompt"] for d in data], [d["response"] for d in data])
    with open(args.output, "w") as f:
        for d, v in zip(data, verdicts):
            f.write(json.dumps({**d, "safe": v.safe, "score": v.score}) + "\n")
    out = {"rows": len(data), "safe": sum(v.safe for v in verdicts)}
    if args.labels:
        gold = [str(d[args.labels]).lower() in ("1", "true") for d in data]
        pred = [v.safe for v in verdicts]
        tp = sum(g and p for g, p in zip(gold, pred))
        out["agreement"] = sum(g == p for g, p in zip(gold, pred)) / max(len(data), 1)
        out["precision_safe"] = tp / max(sum(pred), 1)
        out["recall_safe"] = tp / max(sum(gold), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "judge":
            print(json.dumps(_judge_file(args), indent=2))
            return 0
        from cst_ray import stages
        from cst_ray.config import load_config

        cfg = load_config(args.config, overrides=list(args.sets) + list(args.overrides))
        if args.command == "experiment":
            from cst_ray.experiment import run_experiment

            result = run_experiment(cfg)
            print(json.dumps({k: result[k] for k in ("scores", "capability", "report")}, indent=2))
            return 0
        fn = {"run": stages.run_all, "generate": stages.generate, "pairs": stages.build_pairs,
              "train": stages.train, "evaluate": stages.evaluate}[args.command]
        result = fn(cfg)
        if args.command == "evaluate" or args.command == "run":
            print(json.dumps(result["scores"], indent=2))
        return 0
    except CSTError as e:
        print(f"cst-ray: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
