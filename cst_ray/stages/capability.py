"""The experiment's capability stage: multiple-choice accuracy of every model (base and each
trained method) on the same items, with each tuned model's difference from the base.

    <run_dir>/capability/<model>.json   accuracy with its 95% CI and the per-item answers
    <run_dir>/capability/stats.json     written last, with the settings the scores depend on

Like every stage, it is complete when its stats.json records the same settings (the training
settings, which make the models, and `eval.capability_*`); with others it is set aside and done
again, or stops the run under `--reuse` (stages/redo.py)."""

from __future__ import annotations

import json
import logging
import time

from cst_ray.config.schema import CSTConfig
from cst_ray.core.files import atomic_write_text
from cst_ray.evaluation.capability import capability_scores, load_tasks
from cst_ray.evaluation.metrics import paired_bootstrap_diff
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.stages.records import mark_started
from cst_ray.stages.redo import is_complete

log = logging.getLogger(__name__)


def capability(cfg: CSTConfig, models: dict[str, str]) -> dict:
    """{model: {task: score}} for `models` ({name: folder}), read back when the stage is complete."""
    out = stage_dir(cfg, "capability")
    if is_complete(cfg, "capability") and all((out / f"{m}.json").is_file() for m in models):
        result = {m: json.loads((out / f"{m}.json").read_text()) for m in models}
    else:
        mark_started(cfg, "capability")
        items = load_tasks(cfg.eval.capability_tasks, limit=cfg.eval.capability_limit, seed=cfg.data.seed)
        result = {}
        for name, path in models.items():
            t0 = time.time()
            result[name] = capability_scores(path, items, seed=cfg.data.seed, samples=cfg.eval.bootstrap_samples)
            atomic_write_text(out / f"{name}.json", json.dumps(result[name], indent=2) + "\n")
            log.info(f"capability[{name}]: " + "  ".join(f"{t}={s['value']:.3f}" for t, s in result[name].items())
                     + f" ({time.time() - t0:.0f}s)")
        write_stage_stats(cfg, "capability", {"tasks": cfg.eval.capability_tasks,
                                              "limit": cfg.eval.capability_limit, "models": list(models)})
    add_deltas(result, samples=cfg.eval.bootstrap_samples, seed=cfg.data.seed)
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
