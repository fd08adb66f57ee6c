"""What a stage records of its settings when it starts, and reading its records back: when a
stage counts as complete.

A stage is complete when its `stats.json` exists: it is written last, atomically
(`write_stage_stats`, stages/common.py), and records the settings the stage's outputs depend on
(`stage_inputs`, stages/fingerprint.py). A complete stage made with other settings is never
reused, nor a half-done one resumed (`inputs.json`, written when it starts): by default (`stale_stages: redo`) it is set aside as `<stage>.replaced` and done again; with
`--reuse` (`stale_stages: stop`) the run stops naming the keys that differ (stages/redo.py).
"""

from __future__ import annotations

import json
import logging

from cst_ray.config.load import to_dict
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text
from cst_ray.stages.common import stage_dir
from cst_ray.stages.fingerprint import flatten, stage_inputs

log = logging.getLogger(__name__)

STARTED = "inputs.json"  # a stage's settings, written when it starts (stats.json: when it ends)


def mark_started(cfg: CSTConfig, name: str) -> None:
    """Record the settings a stage starts with, so a half-done stage is never resumed with others."""
    d = stage_dir(cfg, name)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / STARTED, json.dumps(stage_inputs(cfg, name), indent=1) + "\n")


def _defaults() -> dict:
    """Every setting's default, flattened: what a key absent from an older stage's record meant."""
    return flatten(json.loads(json.dumps(to_dict(CSTConfig()))))


def _differences(saved: dict, now: dict) -> str:
    """The keys whose values differ; a key the saved record lacks (a setting added by a newer
    cst-ray) differs only when its value now is not its default."""
    defaults = _defaults()
    changed = sorted(k for k in now.keys() | saved.keys() if now.get(k) != saved.get(k)
                     and not (k not in saved and k in defaults and now.get(k) == defaults[k]))
    shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
    return shown + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def stage_state(cfg: CSTConfig, name: str) -> tuple[str, str]:
    """("absent" | "complete" | "stale", what differs), read only. A stage is stale when its
    stats.json, or for one never finished the inputs.json written when it started, records
    other settings than `cfg`'s."""
    d = stage_dir(cfg, name)
    path = d / "stats.json" if (d / "stats.json").is_file() else d / STARTED
    if not path.is_file():
        return "absent", ""
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise StageError(f"{path}: not readable JSON ({e}); delete {d} to redo the stage") from None
    saved = saved.get("inputs") if path.name == "stats.json" else saved
    done = "complete" if path.name == "stats.json" else "absent"
    if saved is None:  # written before stages recorded their inputs
        log.warning("%s: made by an older cst-ray that did not record its settings; reused as it is", d)
        return done, ""
    why = _differences(saved, stage_inputs(cfg, name))
    return ("stale", why) if why else (done, "")
