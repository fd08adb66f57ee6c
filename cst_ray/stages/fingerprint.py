"""What a stage's outputs depend on (`stage_inputs`): the config sections it reads, less the
settings of how it runs, the sha256 of every input file and local model folder it names, and
the cst-ray version. A stage's records (stages/records.py) hold this, so that a stage made with
other settings is never taken for this one's."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cst_ray.config.load import to_dict
from cst_ray.config.schema import CSTConfig
from cst_ray.core.files import path_sha256
from cst_ray.data.sources import source_names

# The config sections each stage's outputs depend on, cumulatively (a stage depends on the ones before).
_SECTIONS = {
    "prompts": ("data",),
    "generate": ("data", "model", "prompts", "generation"),
    "pairs": ("data", "model", "prompts", "generation", "pairs", "policies"),
    "train": ("data", "model", "prompts", "generation", "pairs", "policies", "train"),
    "evaluate": ("data", "model", "prompts", "generation", "pairs", "policies", "train", "eval"),
    "capability": ("data", "model", "prompts", "generation", "pairs", "policies", "train"),
}
# Keys outside those sections a stage's outputs depend on (the experiment's capability stage: its tasks).
_OWN_KEYS = {"capability": ("eval.capability_tasks", "eval.capability_limit", "eval.bootstrap_samples")}
# Training settings the pairs stage's reference log-probs (`pairs.reference_logps: true`) depend on:
# the precision (through `pairs.reference_dtype: auto` and bf16-mixed's autocast) and the tokenisation.
_REFERENCE_KEYS = ("train.precision", "train.max_length", "train.min_response_tokens", "train.packing",
                   "train.max_completion_length")
# Settings of how a stage runs, not of what it makes.
_RUNTIME = ("generation.pool.", "generation.progress_interval_s", "generation.rows_per_shard",
            "train.storage_path", "train.keep_checkpoints", "train.max_failures", "train.checkpoint_every",
            "train.threads_per_worker", "train.cpus_per_worker", "train.gpu_memory_gb", "eval.aims.", "eval.examples_per_variant",
            "eval.capability_", "eval.bootstrap_samples")
# The file-valued settings each stage reads, cumulatively (builtin names are pinned by package version).
_FILE_KEYS = {
    "prompts": ("data.source",),
    "generate": ("data.source", "data.benign_sources", "model.name_or_path", "model.chat_template",
                 "generation.critic.name_or_path", "generation.critique.constitution"),
    "pairs": ("pairs.extra_tasks",),
    "train": (),
    "evaluate": ("eval.unseen_sources",),
    "capability": (),
}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested mapping."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def stage_inputs(cfg: CSTConfig, name: str) -> dict:
    """{dotted key: value} of the settings stage `name`'s outputs depend on (JSON values), the
    sha256 of every input file and local model folder they name (`files.<key>`), and the cst-ray
    version: editing a prompt file in place, or upgrading cst-ray, redoes the stage."""
    tree = to_dict(cfg)
    flat = flatten({s: tree[s] for s in _SECTIONS[name]})
    flat = {k: v for k, v in flat.items() if not k.startswith(_RUNTIME)}
    every = flatten(tree)
    flat.update({k: every[k] for k in _OWN_KEYS.get(name, ())})
    if name == "pairs" and cfg.pairs.reference_logps:
        flat.update({k: every[k] for k in _REFERENCE_KEYS})
    flat.update(_input_files(cfg, name))
    flat["cst_ray.version"] = _version()
    return json.loads(json.dumps(flat))


def _input_files(cfg: CSTConfig, name: str) -> dict:
    order = list(_FILE_KEYS)
    keys = [k for stage in order[:order.index(name) + 1] for k in _FILE_KEYS[stage]]
    flat = flatten(to_dict(cfg))
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
    try:
        return version("cst-ray")
    except PackageNotFoundError:
        return "unknown"
