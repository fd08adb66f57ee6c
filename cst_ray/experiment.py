"""The paper's experiment: base model vs the DPO baseline (s1 pairs only) vs CST (mirrored
pairs), trained and evaluated on the same data, seeds and held-out prompts.

    <run_dir>/  ... the stages of `run` with train.methods = [dpo, cst] ...
      capability/<model>.json      multiple-choice accuracy with 95% CI (same items per model)
      report.md, report.html       tables, figures/*.png, example answers
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import ConfigError
from cst_ray.core.files import atomic_write_text
from cst_ray.core.stats import write_stats
from cst_ray.evaluation.capability import capability_scores, load_tasks
from cst_ray.evaluation.metrics import paired_bootstrap_diff
from cst_ray.evaluation.report import write_report
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.common import stage_dir
from cst_ray.stages.fingerprint import stage_inputs
from cst_ray.stages.mirror import upload_run_files
from cst_ray.stages.runner import run_all

log = logging.getLogger(__name__)


def capability(cfg: CSTConfig, models: dict[str, str]) -> dict:
    """Capability scores per model; each model's file is written once and reused on re-runs."""
    out = Path(cfg.run_dir) / "capability"
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    items = None  # read and drawn once, only if some model still needs scoring
    for name, path in models.items():
        f = out / f"{name}.json"
        want = {"tasks": list(cfg.eval.capability_tasks), "limit": cfg.eval.capability_limit, "seed": cfg.data.seed,
                "model": str(path),  # a trained model: also the settings it was trained with
                "trained_with": None if name == "base" else stage_inputs(cfg, "train")}
        if f.is_file():
            cached = json.loads(f.read_text())
            if cached.get("_settings") == want:  # same tasks, items and model: reuse
                result[name] = {k: v for k, v in cached.items() if k != "_settings"}
                continue
            log.info(f"capability[{name}]: settings changed since {f} was written; scoring again")
        t0 = time.time()
        if items is None:
            items = load_tasks(cfg.eval.capability_tasks, limit=cfg.eval.capability_limit, seed=cfg.data.seed)
        scores = capability_scores(path, items, seed=cfg.data.seed, samples=cfg.eval.bootstrap_samples)
        atomic_write_text(f, json.dumps({**scores, "_settings": want}, indent=2) + "\n")
        result[name] = scores
        log.info(f"capability[{name}]: " + "  ".join(f"{t}={s['value']:.3f}" for t, s in scores.items())
             + f" ({time.time() - t0:.0f}s)")
    add_deltas(result, samples=cfg.eval.bootstrap_samples, seed=cfg.data.seed)
    write_stats(out / "stats.json", {"tasks": cfg.eval.capability_tasks, "limit": cfg.eval.capability_limit,
                                     "models": list(models)})
    return result


def add_deltas(result: dict, *, samples: int, seed: int, base: str = "base") -> None:
    """Each tuned model's accuracy minus the base model's on the same items (paired bootstrap)."""
    if base not in result:
        return
    for name, tasks in result.items():
        for task, s in tasks.items():
            ref = result[base].get(task, {})
            if name != base and "correct" in s and "correct" in ref:
                s["delta_vs_base"] = paired_bootstrap_diff([c == "1" for c in s["correct"]],
                                                           [c == "1" for c in ref["correct"]], samples, seed).as_dict()


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
