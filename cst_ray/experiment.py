"""The paper's experiment: base model vs the DPO baseline (s1 pairs only) vs CST (mirrored
pairs), trained and evaluated on the same data, seeds and held-out prompts.

    <run_dir>/  ... the stages of `run` with train.methods = [dpo, cst] ...
      capability/<model>.json      multiple-choice accuracy with 95% CI (stages/capability.py)
      report.md, report.html       tables, figures/*.png, example answers
"""

from __future__ import annotations

import dataclasses
import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import ConfigError
from cst_ray.evaluation.report import write_report
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.capability import capability
from cst_ray.stages.common import stage_dir
from cst_ray.stages.mirror import upload_run_files
from cst_ray.stages.runner import run_all

log = logging.getLogger(__name__)


METHODS = ["dpo", "cst"]  # the DPO baseline (s1 pairs only) and CST (mirrored pairs)


def experiment_config(cfg: CSTConfig) -> CSTConfig:
    """The run's config with both methods trained (what its stages record as their settings)."""
    if cfg.policies:
        raise ConfigError("`cst-ray experiment` compares base, DPO and CST on the s1/s0 switch; run a config with "
                          "policies through `cst-ray run`", key="policies")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, methods=list(METHODS)))


def run_experiment(cfg: CSTConfig) -> dict:
    cfg = experiment_config(cfg)
    report = run_all(cfg)
    models = {"base": resolve_model(cfg.model),
              **{m: str((stage_dir(cfg, "train") / m / "model").resolve()) for m in METHODS}}
    cap = capability(cfg, models) if cfg.eval.capability_tasks else {}
    paths = write_report(cfg, report, cap)
    upload_run_files(cfg)  # capability/, figures/, report.* to run_uri
    log.info(f"experiment report: {paths['md']} and {paths['html']}")
    return {"scores": report["scores"], "capability": cap, "report": paths}
