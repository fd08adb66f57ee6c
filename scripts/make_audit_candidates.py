"""Write blind judge-audit candidates from an evaluate run's answers.

Usage: python scripts/make_audit_candidates.py RUN_DIR MODEL_NAME OUT.jsonl [PER_VARIANT]

Reads <RUN_DIR>/evaluate/responses/base/*.parquet, drops prompts already in
results/judge_audit.jsonl, keeps the same first PER_VARIANT new prompts (held-out order) under
every variant, shuffles the rows (fixed seed) and writes only cid, model, variant, prompt,
response: no judge verdicts or anything else that hints at a label.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq


def main() -> None:
    run_dir, model, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    per_variant = int(sys.argv[4]) if len(sys.argv) > 4 else 60
    audited = {json.loads(line)["prompt"] for line in open("results/judge_audit.jsonl")}
    rows = pq.read_table(run_dir / "evaluate" / "responses" / "base").to_pylist()
    variants = sorted({r["variant"] for r in rows})
    by_key = {(r["prompt_id"], r["variant"]): r for r in rows}
    order: list[str] = []  # prompt ids in held-out order, answered under every variant
    held = pq.read_table(run_dir / "prompts" / "eval.parquet").column("id").to_pylist()
    rank = {pid: i for i, pid in enumerate(held)}
    for r in sorted(rows, key=lambda r: rank.get(r["prompt_id"], len(rank))):
        pid = r["prompt_id"]
        if pid in order or r["prompt"] in audited:
            continue
        if all((pid, v) in by_key for v in variants):
            order.append(pid)
    keep = order[:per_variant]
    picked = [by_key[(pid, v)] for pid in keep for v in variants]
    random.Random(0).shuffle(picked)
    with open(out, "w") as f:
        for cid, r in enumerate(picked):
            f.write(json.dumps({"cid": cid, "model": model, "variant": r["variant"],
                                "prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) + "\n")
    print(f"{len(picked)} rows, {len(keep)} prompts x {len(variants)} variants ({variants}); "
          f"{len(order)} new prompts available, {len({r['prompt'] for r in rows} & audited)} already audited dropped")


if __name__ == "__main__":
    main()
