"""A stage made with other settings: set aside as `<stage>.replaced` and done again, or a stop.

By default (`stale_stages: redo`) such a stage is redone; with `--reuse` (`stale_stages: stop`)
the run stops naming the keys that differ. Where the stage cannot be redone safely (a run_uri
mirror, training checkpoints outside the run folder) the run stops before any work.
"""

from __future__ import annotations

import logging
import shutil

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.stages.common import stage_dir
from cst_ray.stages.records import stage_state

log = logging.getLogger(__name__)


def is_complete(cfg: CSTConfig, name: str) -> bool:
    """True for a finished stage made with these settings, False for none. A stage made with
    other settings is set aside (-> False) or stops the run, as `cfg.stale_stages` says."""
    state, why = stage_state(cfg, name)
    if state == "stale":
        set_aside(cfg, name, why)
        return False
    return state == "complete"


def refuse_unless_redoable(cfg: CSTConfig, name: str, why: str) -> None:
    """StageError when a stage made with other settings may not be redone here."""
    d = stage_dir(cfg, name)
    if cfg.stale_stages == "stop":
        raise StageError(f"{d} was made with other settings ({why}) and --reuse was given; use another "
                         f"run_dir, drop --reuse to redo the stage, or delete {d}")
    if cfg.run_uri:
        raise StageError(f"{d} was made with other settings ({why}) and run_uri {cfg.run_uri} mirrors it; "
                         f"use another run_dir and run_uri, or delete the stage in both")
    if name == "train" and cfg.train.storage_path:
        raise StageError(f"{d} was made with other settings ({why}) and its checkpoints under "
                         f"train.storage_path {cfg.train.storage_path} would be resumed; use another "
                         f"train.storage_path, or delete {d} and those checkpoints")


def check_stages_redoable(cfg: CSTConfig, names) -> list[str]:
    """Before any work starts: the stages that will be redone; StageError for one that may not be."""
    stale = []
    for name in names:
        state, why = stage_state(cfg, name)
        if state == "stale":
            refuse_unless_redoable(cfg, name, why)
            stale.append(name)
    return stale


def set_aside(cfg: CSTConfig, name: str, why: str) -> None:
    """Move a stage made with other settings to <stage>.replaced (replacing an older one)."""
    refuse_unless_redoable(cfg, name, why)
    old = stage_dir(cfg, name)
    aside = old.with_name(f"{name}.replaced")
    shutil.rmtree(aside, ignore_errors=True)
    old.rename(aside)
    log.warning(f"{name}: made with other settings ({why}); set aside as {aside}, running it again")
