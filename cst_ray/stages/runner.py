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

import dataclasses
import json
import logging
import time
from pathlib import Path

from cst_ray.config.load import dump_yaml
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text
from cst_ray.core.run_lock import LOCK_NAME
from cst_ray.evaluation.report import write_report
from cst_ray.stages.common import STAGES, is_complete, mark_started, set_aside, stage_dir, stage_state
from cst_ray.stages.evaluate import evaluate
from cst_ray.stages.generate import generate
from cst_ray.stages.pairs import build_pairs
from cst_ray.stages.summary import aim_line, aims_table, summary_markdown, verdict_line
from cst_ray.stages.train import train

log = logging.getLogger(__name__)


def fetch_stage(cfg: CSTConfig, name: str) -> bool:
    """Fetch a stage that is complete at `run_uri` but missing locally (resume elsewhere)."""
    from cst_ray.core import storage

    if not cfg.run_uri or is_complete(cfg, name) or not storage.exists(storage.join(cfg.run_uri, name, "stats.json")):
        return False
    n = storage.fetch_dir(storage.join(cfg.run_uri, name), str(stage_dir(cfg, name)))
    log.info(f"{name}: fetched {n} files from {storage.join(cfg.run_uri, name)}")
    return True


def upload_stage(cfg: CSTConfig, name: str) -> None:
    """Mirror a finished stage to `run_uri` (training checkpoints have their own storage)."""
    from cst_ray.core import storage

    if cfg.run_uri and stage_dir(cfg, name).is_dir():
        n = storage.copy_dir(str(stage_dir(cfg, name)), storage.join(cfg.run_uri, name), skip=("checkpoints",))
        log.info(f"{name}: uploaded {n} files to {storage.join(cfg.run_uri, name)}")


def with_mirrored_checkpoints(cfg: CSTConfig) -> CSTConfig:
    """With `run_uri` and no `train.storage_path`: checkpoints next to the mirrored run, so a killed
    job (whole, or its train stage alone) resumes from the bucket."""
    from cst_ray.core import storage

    if cfg.run_uri and not cfg.train.storage_path:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                  storage_path=storage.join(cfg.run_uri, "checkpoints")))
    return cfg


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
        if name == "generate" and not cfg.pairs.use_generated:
            continue
        fetch_stage(cfg, name)
        if redone and stage_dir(cfg, name).exists():  # made from the earlier stage's old outputs
            set_aside(cfg, name, "an earlier stage was done again")
        if is_complete(cfg, name):
            log.info(f"{name}: complete in {stage_dir(cfg, name)}, reused")
            times[name] = 0.0
            reused.append(name)
            continue
        log.info(f"== {name} ==")
        mark_started(cfg, name)
        t0 = time.time()
        fn(cfg)
        redone = True
        times[name] = time.time() - t0
        log.info(f"{name}: done in {times[name]:.0f}s")
        for done in ("prompts", name):  # prompts/ is written by whichever stage runs first
            upload_stage(cfg, done)
    report = json.loads((stage_dir(cfg, "evaluate") / "eval.json").read_text())
    if "policies" in report:
        return _finish_policies(cfg, report, times, reused)
    atomic_write_text(run / "summary.md", summary_markdown(cfg, report, times, reused))
    write_report(cfg, report, kind="run")  # report.md/html: scores, training, yield, examples
    for r in aims_table(cfg, report):
        log.info(aim_line(r))
    upload_run_files(cfg)
    log.info(f"summary: {run / 'summary.md'}; report: {run / 'report.md'} and {run / 'report.html'}")
    log.info(verdict_line(cfg, report))
    return report


def _finish_policies(cfg: CSTConfig, report: dict, times: dict, reused: list[str]) -> dict:
    """summary.md, report.md/html with the policy matrices, and the verdict on the policy aims."""
    from cst_ray.evaluation.report import write_policy_report
    from cst_ray.stages.policy_summary import policy_summary_markdown, policy_verdict_line

    run = Path(cfg.run_dir)
    atomic_write_text(run / "summary.md", policy_summary_markdown(cfg, report, times, reused))
    write_policy_report(cfg, report, (run / "summary.md").read_text())
    upload_run_files(cfg)
    log.info(f"summary: {run / 'summary.md'}; report: {run / 'report.md'} and {run / 'report.html'}")
    log.info(policy_verdict_line(cfg, report))
    return {**report, "scores": {m: d["adherence"] for m, d in report["policies"]["models"].items()}}


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


def upload_run_files(cfg: CSTConfig) -> None:
    """Mirror what is in the run directory outside the stage folders (config, summary, report)."""
    from cst_ray.core import storage

    if cfg.run_uri:
        storage.copy_dir(str(cfg.run_dir), cfg.run_uri, skip=("prompts", LOCK_NAME, *STAGES))
