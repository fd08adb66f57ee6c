"""The CST stages. Each reads the previous stage's files in the run directory and writes its
own plus a `stats.json`, which is written last and marks the stage complete.

    <run_dir>/
      config.yaml                       resolved config
      prompts/{train,eval}.parquet      validated prompts, split by id; stats.json
      generate/generations/part-*.parquet   y0 -> critique -> y1 rows; rejected_rows/; stats.json
      pairs/{cst,dpo}.parquet           TRL-style pairs; stats.json
      train/<method>/model/             merged HF export (+ checkpoints/, metrics.jsonl); stats.json
      evaluate/responses/<model>/       answers under s1, s0, unseen s0; eval.json; stats.json
      summary.md, report.md, report.html, figures/
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cst_ray.config.load import dump_yaml
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text
from cst_ray.stages.common import STAGES, stage_dir
from cst_ray.stages.evaluate import evaluate
from cst_ray.stages.finish import finish_run
from cst_ray.stages.generate import generate
from cst_ray.stages.mirror import fetch_stage, upload_stage, with_mirrored_checkpoints
from cst_ray.stages.pairs import build_pairs
from cst_ray.stages.records import mark_started, stage_state
from cst_ray.stages.redo import is_complete, set_aside
from cst_ray.stages.train import train

log = logging.getLogger(__name__)


def run_all(cfg: CSTConfig) -> dict:
    """All stages into one run directory; stages already complete there (or at `run_uri`)
    are reused."""
    cfg = with_mirrored_checkpoints(cfg)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", dump_yaml(cfg))
    times, reused, redone = {}, [], False
    fetch_stage(cfg, "prompts")
    for name, fn in (("generate", generate), ("pairs", build_pairs), ("train", train), ("evaluate", evaluate)):
        if name != "generate" or cfg.pairs.use_generated:  # no generate stage: pairs from files only
            redone = _run_in_turn(cfg, name, fn, redone, times, reused) or redone
    report = json.loads((stage_dir(cfg, "evaluate") / "eval.json").read_text())
    return finish_run(cfg, report, times, reused)


def _run_in_turn(cfg: CSTConfig, name: str, fn, redone: bool, times: dict, reused: list[str]) -> bool:
    """One stage of `run_all`: reused when complete with these settings (set aside first when an
    earlier stage was done again), else run, timed and mirrored. -> whether it ran."""
    fetch_stage(cfg, name)
    if redone and stage_dir(cfg, name).exists():  # made from the earlier stage's old outputs
        set_aside(cfg, name, "an earlier stage was done again")
    if is_complete(cfg, name):
        log.info(f"{name}: complete in {stage_dir(cfg, name)}, reused")
        times[name] = 0.0
        reused.append(name)
        return False
    log.info(f"== {name} ==")
    mark_started(cfg, name)
    t0 = time.time()
    fn(cfg)
    times[name] = time.time() - t0
    log.info(f"{name}: done in {times[name]:.0f}s")
    for done in ("prompts", name):  # prompts/ is written by whichever stage runs first
        upload_stage(cfg, done)
    return True


def run_stage(cfg: CSTConfig, name: str) -> dict:
    """One stage alone (`cst-ray generate | pairs | train | evaluate`, `jobs/<stage>.py`) under the
    contract of `run_all`: complete with these settings -> reused; made, or half made, with other
    settings -> set aside and done again (or, under --reuse, a stop naming the keys that differ);
    else started with its settings recorded, so a kill and a rerun resume only under them."""
    fn = {"generate": generate, "pairs": build_pairs, "train": train, "evaluate": evaluate}[name]
    cfg = with_mirrored_checkpoints(cfg)
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    fetch_stage(cfg, "prompts")
    for before in STAGES[:STAGES.index(name)]:  # what this stage reads must be made with these settings
        fetch_stage(cfg, before)
        state, why = stage_state(cfg, before)
        if state == "stale":
            raise StageError(f"{stage_dir(cfg, before)} was made with other settings ({why}); `cst-ray {name}` "
                             f"would read it: run `cst-ray {before}` (or `cst-ray run`) with these settings first")
    fetch_stage(cfg, name)
    if is_complete(cfg, name):
        log.info(f"{name}: complete in {stage_dir(cfg, name)}, reused")
        done = "eval.json" if name == "evaluate" else "stats.json"
        return json.loads((stage_dir(cfg, name) / done).read_text())
    mark_started(cfg, name)
    result = fn(cfg)
    for done in ("prompts", name):
        upload_stage(cfg, done)
    return result
