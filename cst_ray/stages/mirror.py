"""A run mirrored to `run_uri` (any pyarrow.fs URI): stages fetched from it to resume elsewhere,
finished stages and the run's own files uploaded to it, training checkpoints kept next to it."""

from __future__ import annotations

import dataclasses
import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.core import storage
from cst_ray.core.run_lock import LOCK_NAME
from cst_ray.stages.common import STAGES, stage_dir
from cst_ray.stages.redo import is_complete

log = logging.getLogger(__name__)


def fetch_stage(cfg: CSTConfig, name: str) -> bool:
    """Fetch a stage that is complete at `run_uri` but missing locally (resume elsewhere)."""
    if not cfg.run_uri or is_complete(cfg, name) or not storage.exists(storage.join(cfg.run_uri, name, "stats.json")):
        return False
    n = storage.fetch_dir(storage.join(cfg.run_uri, name), str(stage_dir(cfg, name)))
    log.info(f"{name}: fetched {n} files from {storage.join(cfg.run_uri, name)}")
    return True


def upload_stage(cfg: CSTConfig, name: str) -> None:
    """Mirror a finished stage to `run_uri` (training checkpoints have their own storage)."""
    if cfg.run_uri and stage_dir(cfg, name).is_dir():
        n = storage.copy_dir(str(stage_dir(cfg, name)), storage.join(cfg.run_uri, name), skip=("checkpoints",))
        log.info(f"{name}: uploaded {n} files to {storage.join(cfg.run_uri, name)}")


def with_mirrored_checkpoints(cfg: CSTConfig) -> CSTConfig:
    """With `run_uri` and no `train.storage_path`: checkpoints next to the mirrored run, so a killed
    job (whole, or its train stage alone) resumes from the bucket."""
    if cfg.run_uri and not cfg.train.storage_path:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                  storage_path=storage.join(cfg.run_uri, "checkpoints")))
    return cfg


def upload_run_files(cfg: CSTConfig) -> None:
    """Mirror what is in the run directory outside the stage folders (config, summary, report)."""
    if cfg.run_uri:
        storage.copy_dir(str(cfg.run_dir), cfg.run_uri, skip=("prompts", LOCK_NAME, *STAGES))
