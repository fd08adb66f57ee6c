"""Useful output per minute: accepted CST pairs per minute of the generate stage.

Runs the real generate stage (`cst-ray generate`, Ray Data + vLLM actor pool, the same
prompts) twice in one invocation, each in its own process and run directory:

  (self)   configs/smollm2.yaml: SmolLM2-135M answers, critiques and revises itself (the paper);
  (critic) configs/default.yaml: SmolLM2-135M answers, Qwen2.5-Coder-0.5B critiques and revises.

    python benchmarks/generation_yield.py                  # 128 prompts (the main job's)
    python benchmarks/generation_yield.py --prompts 32     # quicker

For each: kept rows, rejected rows by reason, stage wall time (ray.init and engine start
included), accepted pairs per minute (each kept row gives two CST pairs). Ends with
`RESULT pairs_per_min_self=<x> pairs_per_min_critic=<y> critic_vs_self=<y/x> kept_share_critic=<k>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("generation_yield")


def run_generate(config: str, prompts: int, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "cst_ray.cli", "generate", "--config", config, f"run_dir={run_dir}",
           f"data.limit={prompts}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    stats = json.loads((run_dir / "generate" / "stats.json").read_text())
    minutes = stats["stage_wall_s"] / 60
    return dict(kept=stats["rows_out"], rejected=stats["rows_rejected"], reasons=stats["rejected_by_reason"],
                wall_s=stats["stage_wall_s"], tok_s=stats["generated_tokens_per_s"],
                pairs_per_min=2 * stats["rows_out"] / minutes,
                kept_share=stats["rows_out"] / max(1, stats["rows_out"] + stats["rows_rejected"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=128)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    res = {}
    with tempfile.TemporaryDirectory(prefix="cst-yield-") as tmp:
        for tag, config in (("self", "configs/smollm2.yaml"), ("critic", "configs/default.yaml")):
            r = res[tag] = run_generate(config, args.prompts, Path(tmp) / tag)
            log.info("(%s) %-22s %3d kept, %3d rejected %s, %.1f s, %.1f generated tok/s: %.1f accepted pairs/min",
                     tag, config, r["kept"], r["rejected"], r["reasons"], r["wall_s"], r["tok_s"], r["pairs_per_min"])
    s, c = res["self"], res["critic"]
    log.info("RESULT pairs_per_min_self=%.1f pairs_per_min_critic=%.1f critic_vs_self=%.2f kept_share_critic=%.3f",
             s["pairs_per_min"], c["pairs_per_min"], c["pairs_per_min"] / s["pairs_per_min"], c["kept_share"])


if __name__ == "__main__":
    main()
