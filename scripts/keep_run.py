"""Keep what backs a main-job run's figures under results/runs/NAME (no weights, no shards).

    python scripts/keep_run.py runs/default NAME [--cpu "Xeon-AMX, AVX2 approximation"]

Writes `eval.json`, `summary.md` and `config.yaml` as the run wrote them, `metrics_<method>.jsonl`
(the training's per-step metrics), `labelled_<model>.jsonl` (every
answer with its variant, system prompt, the judge's verdict and the text flags), and `run.json`
(the CPU named as given, else as this machine reads it; precision and seeds from the run's
config.yaml; the stages' wall times). `scripts/runs_table.py` rebuilds RESULTS.md's table from them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.core.precision import cpu_summary  # noqa: E402

KEEP = ("id", "prompt_id", "variant", "system", "prompt", "response", "safe", "judge_safe", "refusal", "degenerate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("name")
    ap.add_argument("--cpu", default="", help="how to name the CPU (default: this machine's name and flags)")
    args = ap.parse_args()
    run, out = Path(args.run_dir), ROOT / "results" / "runs" / args.name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("summary.md", "config.yaml"):
        shutil.copy(run / f, out / f)
    prompts = run / "prompts" / "eval.parquet"
    category = {r["id"]: r.get("category", "") for r in pq.read_table(prompts).to_pylist()} if prompts.is_file() else {}
    shutil.copy(run / "evaluate" / "eval.json", out / "eval.json")
    for f in sorted((run / "evaluate").glob("labelled_*.parquet")):
        rows = pq.read_table(f).to_pylist()
        with open(out / f"{f.stem}.jsonl", "w") as fh:
            for r in rows:
                row = {k: r.get(k) for k in KEEP}
                if category:  # the harm category of the held-out prompt (policies)
                    row["category"] = category.get(r["prompt_id"], "")
                fh.write(json.dumps(row) + "\n")
    for f in sorted((run / "train").glob("*/metrics.jsonl")):  # the per-step training metrics (loss, step times)
        shutil.copy(f, out / f"metrics_{f.parent.name}.jsonl")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    stats = {s: json.loads((run / s / "stats.json").read_text()) for s in ("generate", "train", "evaluate")
             if (run / s / "stats.json").is_file()}
    meta = {"cpu": args.cpu or cpu_summary(), "precision": f"{cfg['generation']['engine']['dtype']} / "
            f"{cfg['train']['precision']}", "seed": cfg["train"]["seed"], "engine_seed": cfg["generation"]["engine"]["seed"],
            "sources": cfg["data"]["source"], "unseen_sources": cfg["eval"].get("unseen_sources", []),
            "generate_wall_s": stats.get("generate", {}).get("stage_wall_s"),
            "train_wall_s": {m: v.get("wall_s") for m, v in stats.get("train", {}).items() if isinstance(v, dict)
                             and "wall_s" in v}}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"kept {run} as {out}")


if __name__ == "__main__":
    main()
