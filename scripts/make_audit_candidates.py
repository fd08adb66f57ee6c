"""Write blind audit candidates from an evaluate run's answers.

Usage: python scripts/make_audit_candidates.py RUN_DIR MODEL_LABEL OUT.jsonl [PER_VARIANT] [MODELS]
           [--keep-audited] [--variants s1,s0,...]

Reads <RUN_DIR>/evaluate/responses/<model>/*.parquet for each of MODELS (comma-separated run
model names, default "base"), drops the benign over-refusal questions and prompts already in results/judge_audit.jsonl, keeps the
same first PER_VARIANT new prompts (held-out order) under every variant of every model
(PER_VARIANT may be one count per model, comma-separated; --variants limits the variants),
shuffles the rows (fixed seed) and writes cid, model, variant, prompt, response to OUT.jsonl,
and cid, prompt, response only to OUT.blind.jsonl: what a labeller is given, with nothing
that hints at the model, the system prompt or a verdict. `model` is MODEL_LABEL/<model> when
several models are drawn, else MODEL_LABEL.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pyarrow.parquet as pq

from cst_ray.evaluation.variants import BENIGN_VARIANT


def new_prompt_order(run_dir: Path, rows: list[dict], variants: list[str], audited: set[str]) -> list[str]:
    """Held-out prompt ids, in held-out order, never audited and answered under every variant."""
    by_key = {(r["prompt_id"], r["variant"]) for r in rows}
    held = pq.read_table(run_dir / "prompts" / "eval.parquet").column("id").to_pylist()
    prompt_of = {r["prompt_id"]: r["prompt"] for r in rows}
    return [pid for pid in held if pid in prompt_of and prompt_of[pid] not in audited
            and all((pid, v) in by_key for v in variants)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("label", help="model label written to the key file")
    ap.add_argument("out", type=Path)
    ap.add_argument("per_variant", nargs="?", default="60", help="prompts per model, one count or one per model")
    ap.add_argument("models", nargs="?", default="base", help="comma-separated run model names")
    ap.add_argument("--keep-audited", action="store_true",
                    help="also draw prompts whose answers by other models are already in the audit")
    ap.add_argument("--variants", default="", help="comma-separated variants to keep (default: every harmful one)")
    args = ap.parse_args()
    run_dir, label, out = args.run_dir, args.label, args.out
    models = args.models.split(",")
    counts = [int(c) for c in args.per_variant.split(",")]
    counts = counts * len(models) if len(counts) == 1 else counts
    if len(counts) != len(models):
        raise SystemExit(f"per_variant: {len(counts)} counts for {len(models)} models")
    only = set(filter(None, args.variants.split(",")))
    audited = set() if args.keep_audited else {json.loads(line)["prompt"] for line in open("results/judge_audit.jsonl")}
    picked = []
    for model, per_variant in zip(models, counts):
        rows = [r for r in pq.read_table(run_dir / "evaluate" / "responses" / model).to_pylist()
                if r["variant"] != BENIGN_VARIANT and (not only or r["variant"] in only)]  # harmful only
        variants = sorted({r["variant"] for r in rows})
        by_key = {(r["prompt_id"], r["variant"]): r for r in rows}
        order = new_prompt_order(run_dir, rows, variants, audited)
        name = label if len(models) == 1 else f"{label}/{model}"
        picked += [{**by_key[(pid, v)], "model": name} for pid in order[:per_variant] for v in variants]
        print(f"{model}: {min(per_variant, len(order))} prompts x {len(variants)} variants ({variants}); "
              f"{len(order)} new prompts available")
    random.Random(0).shuffle(picked)
    blind = out.with_suffix(".blind.jsonl")
    with open(out, "w") as f, open(blind, "w") as fb:
        for cid, r in enumerate(picked):
            f.write(json.dumps({"cid": cid, "model": r["model"], "variant": r["variant"],
                                "prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) + "\n")
            fb.write(json.dumps({"cid": cid, "prompt": r["prompt"], "response": r["response"]},
                                ensure_ascii=False) + "\n")
    print(f"{len(picked)} rows -> {out} (key) and {blind} (for labellers)")


if __name__ == "__main__":
    main()
