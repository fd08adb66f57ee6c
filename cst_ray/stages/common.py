"""Where stages write (`<run_dir>/<stage>`), in which order they run, where they place engines,
and the `stats.json` each writes last, with the settings its outputs depend on."""

from __future__ import annotations

from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core.stats import write_stats
from cst_ray.stages.fingerprint import stage_inputs

STAGES = ("generate", "pairs", "train", "evaluate")


def stage_dir(cfg: CSTConfig, name: str) -> Path:
    return Path(cfg.run_dir) / name


def use_gpu(cfg: CSTConfig) -> bool:
    return cfg.generation.pool.num_gpus > 0


def write_stage_stats(cfg: CSTConfig, name: str, stats: dict) -> None:
    """The stage's stats.json, with its inputs; written last, it marks the stage complete."""
    write_stats(stage_dir(cfg, name) / "stats.json", {**stats, "inputs": stage_inputs(cfg, name)})
