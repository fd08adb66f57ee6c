"""Training step times of kept runs, from their committed per-step metrics.

    python scripts/step_times.py default-amx-bf16-seed0 bf16mixed-amx-seed0 --from-step 100

For each run under results/runs/ (its `metrics_<method>.jsonl`, written by `scripts/keep_run.py`):
the workers' reference pass, and the median over steps >= `--from-step` of the step time, its
forward, backward and optimizer parts, and the tokens per second. The first steps can be left out
where a run shared the CPU at its start. The last line is each run's median step time as a ratio
of the first run's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.core.stats import read_metrics  # noqa: E402

FIELDS = ("time/step_s", "time/forward_s", "time/backward_s", "time/optimizer_s", "tokens_per_s", "tokens")


def run_figures(run: str, method: str, from_step: int) -> dict:
    steps = read_metrics(ROOT / "results" / "runs" / run / f"metrics_{method}.jsonl")
    if not steps:
        raise SystemExit(f"results/runs/{run}/metrics_{method}.jsonl: no training metrics (keep the run again)")
    late = [m for m in steps if m["step"] >= from_step]
    out = {"run": run, "steps": len(steps), "median_over_steps": f">= {from_step} ({len(late)})",
           "reference_pass_s": round(steps[0].get("time/reference_pass_s", 0.0), 1)}
    out.update({f"median_{k.split('/')[-1]}": round(statistics.median(m[k] for m in late), 2) for k in FIELDS})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--method", default="cst")
    ap.add_argument("--from-step", type=int, default=1)
    args = ap.parse_args()
    figs = [run_figures(r, args.method, args.from_step) for r in args.runs]
    for f in figs:
        print(json.dumps(f))
    base = figs[0]["median_step_s"]
    print("RESULT " + " ".join(f"{f['run']}={f['median_step_s'] / base:.3f}x" for f in figs))


if __name__ == "__main__":
    main()
