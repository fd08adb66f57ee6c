"""The end of a run, after its stages: summary.md, report.md/html, the aims and the verdict on
the console, and the run's own files mirrored to `run_uri`."""

from __future__ import annotations

import logging
from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core.files import atomic_write_text
from cst_ray.evaluation.aims import aim_line, aims_table, verdict_line
from cst_ray.evaluation.report import write_policy_report, write_report
from cst_ray.stages.mirror import upload_run_files
from cst_ray.stages.policy_summary import policy_summary_markdown, policy_verdict_line
from cst_ray.stages.summary import summary_markdown

log = logging.getLogger(__name__)


def finish_run(cfg: CSTConfig, report: dict, times: dict, reused: list[str]) -> dict:
    """summary.md, report.md/html (scores, training, yield, examples), each aim and the verdict
    logged; a run with `policies` ends in `finish_policies`. -> the run's report."""
    if "policies" in report:
        return finish_policies(cfg, report, times, reused)
    run = Path(cfg.run_dir)
    atomic_write_text(run / "summary.md", summary_markdown(cfg, report, times, reused))
    write_report(cfg, report, kind="run")  # report.md/html: scores, training, yield, examples
    for r in aims_table(cfg, report):
        log.info(aim_line(r))
    upload_run_files(cfg)
    log.info(f"summary: {run / 'summary.md'}; report: {run / 'report.md'} and {run / 'report.html'}")
    log.info(verdict_line(cfg, report))
    return report


def finish_policies(cfg: CSTConfig, report: dict, times: dict, reused: list[str]) -> dict:
    """summary.md, report.md/html with the policy matrices, and the verdict on the policy aims."""
    run = Path(cfg.run_dir)
    atomic_write_text(run / "summary.md", policy_summary_markdown(cfg, report, times, reused))
    write_policy_report(cfg, report, (run / "summary.md").read_text())
    upload_run_files(cfg)
    log.info(f"summary: {run / 'summary.md'}; report: {run / 'report.md'} and {run / 'report.html'}")
    log.info(policy_verdict_line(cfg, report))
    return {**report, "scores": {m: d["adherence"] for m, d in report["policies"]["models"].items()}}
