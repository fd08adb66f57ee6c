"""The checks `check_inputs` (stages/preflight.py) runs per part of a command: the run and
storage folders writable, the prompt sources, what generation reads, the extra pair files
(training: training/fit.py). Each returns its part of the summary, or raises the first
CSTError found."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core import storage
from cst_ray.core.errors import ConfigError, InputDataError
from cst_ray.data.constitution import load_constitution
from cst_ray.data.pairs import read_pair_file
from cst_ray.data.policies import check_policy_categories
from cst_ray.data.sources import max_prompt_chars, read_prompts, read_sources
from cst_ray.models.resolve import check_model
from cst_ray.stages.records import stage_state


def check_writable_dir(path: str, key: str) -> str:
    """A folder that exists and is writable, or can be created; else a ConfigError naming `key`."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p} is a file, not a folder", key=key)
    base = next((a for a in (p, *p.parents) if a.exists()), Path("."))
    if not base.is_dir():
        raise ConfigError(f"{p} cannot be created: {base} is a file", key=key)
    try:
        Path(tempfile.mkdtemp(prefix=".cst-ray-probe-", dir=base)).rmdir()
    except OSError as e:
        raise ConfigError(f"{p} is not writable ({e.strerror or e})", key=key) from None
    return str(p)


def check_prompts(cfg: CSTConfig, models: dict) -> dict:
    """The prompt sources read in full, as the prompts stage reads them; unless that stage is
    complete here or at run_uri."""
    if stage_state(cfg, "prompts")[0] == "complete":  # validated when it was made; the source may be gone since
        return {"prompts": "complete"}
    if cfg.run_uri:  # a run resumed elsewhere fetches its prompts from run_uri
        if storage.exists(storage.join(cfg.run_uri, "prompts", "stats.json")):
            return {"prompts": "complete at run_uri"}
    table, stats = read_sources(cfg.data.source, prompt_field=cfg.data.prompt_field, id_field=cfg.data.id_field,
                                max_chars=max_prompt_chars(cfg.generation.engine.max_model_len),
                                category_field=cfg.data.category_field)
    out = {"prompts": {name: st.as_dict() for name, st in stats.items()}}
    if cfg.policies:  # every category a policy names must be one the prompts carry
        out["categories"] = check_policy_categories(cfg.policies, table.column("category").to_pylist())
    return out


def check_generation(cfg: CSTConfig, models: dict) -> dict:
    """The critic model, the constitution and the benign sources the generate stage reads."""
    g = cfg.generation
    if g.critic.name_or_path:
        models["generation.critic.name_or_path"] = check_model(g.critic.name_or_path, "generation.critic.name_or_path")
    principles = load_constitution(g.critique.constitution)
    benign = {s: read_prompts(s, limit=cfg.data.benign_limit)[1].as_dict() for s in cfg.data.benign_sources}
    return {"principles": len(principles), "benign_sources": benign}


def check_pairs(cfg: CSTConfig, models: dict) -> dict:
    """The extra pair files the pairs stage reads (and the evaluate stage, for their held-out
    rows), read in full; an error names the key `pairs.extra_tasks` and the file."""
    p, extra = cfg.pairs, {}
    for f in p.extra_tasks:
        try:
            extra[f] = read_pair_file(f, limit=p.extra_tasks_limit, tasks=tuple(p.extra_tasks_select),
                                      heldout_fraction=p.extra_tasks_eval_fraction, seed=cfg.data.seed)[1].as_dict()
        except InputDataError as e:
            raise InputDataError(e.message, file=e.file, row=e.row, field=e.field, key="pairs.extra_tasks") from None
    return {"extra_tasks": extra}
