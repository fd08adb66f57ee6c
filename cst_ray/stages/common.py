"""Where stages write (`<run_dir>/<stage>`), and when a stage counts as complete.

A stage is complete when its `stats.json` exists: it is written last, atomically, and records
the settings the stage's outputs depend on (`stage_inputs`). A complete stage made with other
settings is never reused, nor a half-done one resumed (`inputs.json`, written when it starts):
by default (`stale_stages: redo`) it is set aside as `<stage>.replaced` and done again; with
`--reuse` (`stale_stages: stop`) the run stops naming the keys that differ. Where the stage
cannot be redone safely (a run_uri mirror, training checkpoints outside the run folder) the
run stops before any work.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from cst_ray.config.load import to_dict
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.files import atomic_write_text, path_sha256
from cst_ray.core.stats import write_stats

log = logging.getLogger(__name__)

STAGES = ("generate", "pairs", "train", "evaluate")
STARTED = "inputs.json"  # a stage's settings, written when it starts (stats.json: when it ends)

# The config sections each stage's outputs depend on, cumulatively (a stage depends on the ones before).
_SECTIONS = {
    "prompts": ("data",),
    "generate": ("data", "model", "prompts", "generation"),
    "pairs": ("data", "model", "prompts", "generation", "pairs", "policies"),
    "train": ("data", "model", "prompts", "generation", "pairs", "policies", "train"),
    "evaluate": ("data", "model", "prompts", "generation", "pairs", "policies", "train", "eval"),
}
# Settings of how a stage runs, not of what it makes.
_RUNTIME = ("generation.pool.", "generation.progress_interval_s", "generation.rows_per_shard",
            "train.storage_path", "train.keep_checkpoints", "train.max_failures", "train.checkpoint_every",
            "train.threads_per_worker", "train.cpus_per_worker", "train.gpu_memory_gb", "eval.aims.", "eval.examples_per_variant",
            "eval.capability_", "eval.bootstrap_samples")


def stage_dir(cfg: CSTConfig, name: str) -> Path:
    return Path(cfg.run_dir) / name


def use_gpu(cfg: CSTConfig) -> bool:
    return cfg.generation.pool.num_gpus > 0


def _defaults() -> dict:
    """Every setting's default, flattened: what a key absent from an older stage's record meant."""
    from cst_ray.config.schema import CSTConfig as _Defaults

    return _flatten(json.loads(json.dumps(to_dict(_Defaults()))))


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def stage_inputs(cfg: CSTConfig, name: str) -> dict:
    """{dotted key: value} of the settings stage `name`'s outputs depend on (JSON values), the
    sha256 of every input file and local model folder they name (`files.<key>`), and the cst-ray
    version: editing a prompt file in place, or upgrading cst-ray, redoes the stage."""
    tree = to_dict(cfg)
    flat = _flatten({s: tree[s] for s in _SECTIONS[name]})
    flat = {k: v for k, v in flat.items() if not k.startswith(_RUNTIME)}
    flat.update(_input_files(cfg, name))
    flat["cst_ray.version"] = _version()
    return json.loads(json.dumps(flat))


# The file-valued settings each stage reads, cumulatively (builtin names are pinned by package version).
_FILE_KEYS = {
    "prompts": ("data.source",),
    "generate": ("data.source", "data.benign_sources", "model.name_or_path", "model.chat_template",
                 "generation.critic.name_or_path", "generation.critique.constitution"),
    "pairs": ("pairs.extra_tasks",),
    "train": (),
    "evaluate": ("eval.unseen_sources",),
}


def _input_files(cfg: CSTConfig, name: str) -> dict:
    from cst_ray.data.sources import source_names

    order = list(_FILE_KEYS)
    keys = [k for stage in order[:order.index(name) + 1] for k in _FILE_KEYS[stage]]
    flat = _flatten(to_dict(cfg))
    out = {}
    for key in keys:
        value = source_names(cfg.data.source) if key == "data.source" else flat.get(key)
        for item in value if isinstance(value, list) else [value]:
            digest = _path_digest(str(item)) if item else None
            if digest:
                out[f"files.{key}[{item}]" if isinstance(value, list) else f"files.{key}"] = digest
    return out


def _path_digest(value: str) -> str | None:
    """sha256 of a local file or model folder; None for anything else (a builtin name, a hub
    id: their names pin them)."""
    return path_sha256(value) if Path(value).expanduser().exists() else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cst-ray")
    except PackageNotFoundError:
        return "unknown"


def write_stage_stats(cfg: CSTConfig, name: str, stats: dict) -> None:
    """The stage's stats.json, with its inputs; written last, it marks the stage complete."""
    write_stats(stage_dir(cfg, name) / "stats.json", {**stats, "inputs": stage_inputs(cfg, name)})


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


def mark_started(cfg: CSTConfig, name: str) -> None:
    """Record the settings a stage starts with, so a half-done stage is never resumed with others."""
    d = stage_dir(cfg, name)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / STARTED, json.dumps(stage_inputs(cfg, name), indent=1) + "\n")
