"""Where stages write (`<run_dir>/<stage>`) and when a stage counts as complete."""

from __future__ import annotations

import logging
from pathlib import Path

from cst_ray.config.schema import CSTConfig

log = logging.getLogger(__name__)


STAGES = ("generate", "pairs", "train", "evaluate")


def stage_dir(cfg: CSTConfig, name: str) -> Path:
    return Path(cfg.run_dir) / name


def is_complete(cfg: CSTConfig, name: str) -> bool:
    return (stage_dir(cfg, name) / "stats.json").is_file()


def use_gpu(cfg: CSTConfig) -> bool:
    return cfg.generation.pool.num_gpus > 0
