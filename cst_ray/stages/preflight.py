"""Checks that run before any stage work: every file and folder a command will read or write.

The CLI calls `check_inputs(cfg, command)` right after loading the config, before Ray starts,
so bad input stops it with one line (file, row and field, or the config key) instead of a
failure minutes later inside an actor. The checks read the prompt and pair files in full (the
same validation the stages run), and look at model and judge folders without loading them.

    summary = check_inputs(cfg, "generate")   # {"prompts": {...}, "models": {...}, ...}
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import ConfigError
from cst_ray.data.constitution import load_constitution
from cst_ray.data.pairs import read_pair_file
from cst_ray.data.sources import max_prompt_chars, read_prompts, read_sources
from cst_ray.models.resolve import check_model
from cst_ray.stages.common import STAGES, check_stages_redoable, stage_state

log = logging.getLogger(__name__)

ALL_PARTS = ("prompts", "generation", "pairs", "training", "eval")
# What each command reads besides the policy model and the run directory (every command).
COMMAND_PARTS = {"generate": ("prompts", "generation"), "pairs": ("pairs",), "train": ("training",),
                 "evaluate": ("prompts", "eval"), "run": ALL_PARTS, "experiment": ALL_PARTS, "check": ALL_PARTS}


def check_inputs(cfg: CSTConfig, command: str) -> dict:
    """Check what `command` will read and write; -> a summary of what was found (counts,
    skips by reason). Raises the first CSTError found."""
    parts = set(COMMAND_PARTS.get(command, ()))  # other commands: the policy model and run_dir only
    if not cfg.pairs.use_generated:
        parts.discard("generation")
    summary: dict = {"run_dir": check_writable_dir(cfg.run_dir, "run_dir")}
    for key in ("run_uri", "train.storage_path"):
        value = cfg.run_uri if key == "run_uri" else cfg.train.storage_path
        if value and "://" not in value:
            summary[key] = check_writable_dir(value, key)
    summary["models"] = {"model.name_or_path": check_model(cfg.model.name_or_path, chat_template=cfg.model.chat_template)}
    if command in ("run", "experiment", "check"):  # stages made with other settings: redo or stop, now
        summary["stages_to_redo"] = check_stages_redoable(cfg, ("prompts", *STAGES))
    elif command in STAGES:  # a stage alone keeps the same contract (stages/runner.py: run_stage)
        summary["stages_to_redo"] = check_stages_redoable(cfg, ("prompts", command))
    for part, fn in (("prompts", _prompts), ("generation", _generation), ("pairs", _pairs), ("training", _training),
                     ("eval", _eval)):
        if part in parts:
            summary.update(fn(cfg, summary["models"]))
    return summary


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


def _prompts(cfg: CSTConfig, models: dict) -> dict:
    if stage_state(cfg, "prompts")[0] == "complete":  # validated when it was made; the source may be gone since
        return {"prompts": "complete"}
    if cfg.run_uri:  # a run resumed elsewhere fetches its prompts from run_uri
        from cst_ray.core import storage

        if storage.exists(storage.join(cfg.run_uri, "prompts", "stats.json")):
            return {"prompts": "complete at run_uri"}
    table, stats = read_sources(cfg.data.source, prompt_field=cfg.data.prompt_field, id_field=cfg.data.id_field,
                                max_chars=max_prompt_chars(cfg.generation.engine.max_model_len),
                                category_field=cfg.data.category_field)
    out = {"prompts": {name: st.as_dict() for name, st in stats.items()}}
    if cfg.policies:  # every category a policy names must be one the prompts carry
        from cst_ray.data.policies import check_policy_categories

        out["categories"] = check_policy_categories(cfg.policies, table.column("category").to_pylist())
    return out


def _generation(cfg: CSTConfig, models: dict) -> dict:
    g = cfg.generation
    if g.critic.name_or_path:
        models["generation.critic.name_or_path"] = check_model(g.critic.name_or_path, "generation.critic.name_or_path")
    principles = load_constitution(g.critique.constitution)
    benign = {s: read_prompts(s, limit=cfg.data.benign_limit)[1].as_dict() for s in cfg.data.benign_sources}
    return {"principles": len(principles), "benign_sources": benign}


def _pairs(cfg: CSTConfig, models: dict) -> dict:
    p = cfg.pairs
    extra = {f: read_pair_file(f, limit=p.extra_tasks_limit, tasks=tuple(p.extra_tasks_select))[1].as_dict()
             for f in p.extra_tasks}
    return {"extra_tasks": extra}


def _training(cfg: CSTConfig, models: dict) -> dict:
    """The policy's LoRA targets against its modules, and DeepSpeed's ZeRO-3 estimate of the
    model-state memory per GPU, from the model's config on the meta device (no weights read).
    A hub model or an alias not built yet is checked when the train stage loads it."""
    from cst_ray.models.inspect import check_lora_targets, meta_model, zero3_memory_estimate
    from cst_ray.models.resolve import local_model_folder
    from cst_ray.training.logprobs import check_head_supported

    folder = local_model_folder(cfg.model)
    if folder is None:
        return {"training": "model not on this machine yet: checked when it is loaded"}
    model = meta_model(folder, cfg.model.trust_remote_code)
    try:
        check_head_supported(model)
    except ValueError as e:
        raise ConfigError(str(e), key="model.name_or_path") from None
    if cfg.train.lora.enabled:
        check_lora_targets(model, cfg.train.lora.target_modules, cfg.model.name_or_path)
    est = zero3_memory_estimate(model, cfg.train.num_workers)
    line = (f"ZeRO-3 model states (DeepSpeed's estimate: parameters, gradients, Adam; activations come on top): "
            f"{est['parameters'] / 1e6:.0f}M parameters over {est['workers']} workers -> "
            f"{est['per_gpu_gib']:.2f} GiB per GPU")
    limit, where = _device_memory_gib(cfg)
    if limit and est["per_gpu_gib"] > limit:
        line += f": more than the {limit:.1f} GiB {where}; raise train.num_workers or use LoRA"
    return {"training": {"zero3_estimate": est, "device_memory_gib": limit, "line": line,
                         "over": bool(limit and est["per_gpu_gib"] > limit)}}


def log_training_estimate(summary: dict) -> None:
    """The ZeRO-3 line of the checks, on the console after the precision line (a warning when over)."""
    t = summary.get("training")
    if isinstance(t, dict) and t.get("line"):
        (log.warning if t["over"] else log.info)(t["line"])


def _device_memory_gib(cfg: CSTConfig) -> tuple[float, str]:
    """The memory one training GPU has: `train.gpu_memory_gb`, else the first visible GPU's."""
    if cfg.train.gpu_memory_gb:
        return float(cfg.train.gpu_memory_gb), "of train.gpu_memory_gb"
    if cfg.train.use_gpu:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30, "this machine's GPU has"
    return 0.0, ""


def _eval(cfg: CSTConfig, models: dict) -> dict:
    e = cfg.eval
    out: dict = {"judge": e.judge}
    if e.benign_limit:
        out["eval_benign"] = read_prompts(e.benign_source)[1].as_dict()
    if e.unseen_sources:
        out["eval_unseen_sources"] = {s: read_prompts(s)[1].as_dict() for s in e.unseen_sources}
    if e.judge in ("llm", "cascade") and e.judge_model:
        models["eval.judge_model"] = check_model(e.judge_model, "eval.judge_model")
    if e.judge in ("classifier", "finetuned"):
        prompts = {"s1": cfg.prompts.s1, "s0": cfg.prompts.s0}
        if e.judge_path:
            check_judge_folder(e.judge, e.judge_path, "eval.judge_path", e.judge_train_pairs, **prompts)
        for f in e.judge_train_pairs:
            read_pair_file(f)
        if not e.judge_path:
            out["judge_folder"] = check_default_judge(e.judge, e.judge_train_pairs, "eval.judge", **prompts)
    return out


def _judge_folder_problem(kind: str, d: Path) -> str:
    """What a `cst-ray train-judge --kind <kind>` folder lacks (card, weights, a readable card); "" = nothing."""
    from cst_ray.evaluation.judges import classifier, finetuned

    weights = classifier.WEIGHTS_FILE if kind == "classifier" else finetuned.WEIGHTS_FILE
    if not d.is_dir():
        return f"judge folder {d} {'is a file' if d.exists() else 'not found'}"
    for name in (finetuned.CARD_FILE, weights) + (("config.json",) if kind == "finetuned" else ()):
        if not (d / name).is_file():
            return f"judge folder {d} has no {name}"
    try:
        card = json.loads((d / finetuned.CARD_FILE).read_text())
    except (OSError, ValueError) as e:
        return f"{d / finetuned.CARD_FILE} is not readable JSON ({type(e).__name__})"
    if not isinstance(card, dict) or (kind == "finetuned" and not isinstance(card.get("recipe"), dict)):
        return f"{d / finetuned.CARD_FILE} is not a {kind} judge card"
    return ""


def check_judge_folder(kind: str, path: str, key: str, train_pairs: list[str] = (), *, s1: str = "",
                       s0: str = "") -> None:
    """A `cst-ray train-judge --kind <kind>` folder: its card (JSON) and weights are there; else a
    ConfigError naming `key` and the command that trains one there (with `train_pairs`)."""
    from cst_ray.evaluation.judges.folders import train_judge_command

    problem = _judge_folder_problem(kind, Path(path))
    if problem:
        raise ConfigError(f"{problem}; train one with `{train_judge_command(kind, path, train_pairs, s1=s1, s0=s0)}`",
                          key=key)


def check_default_judge(kind: str, train_pairs: list[str], key: str, *, s1: str = "", s0: str = "") -> str:
    """A `kind` judge given no folder reads the default one (judges.folders); a judge never trains
    itself, so that folder must hold a trained judge -> the folder, else a ConfigError naming `key`,
    the folder and the command that trains one there."""
    from cst_ray.evaluation.judges.folders import default_judge_dir, train_judge_command

    d = default_judge_dir(kind, list(train_pairs))
    problem = _judge_folder_problem(kind, d)
    if problem:
        raise ConfigError(f"no trained {kind} judge in its default folder, read when no judge folder is given "
                          f"({problem}); judges do not train themselves: train one with "
                          f"`{train_judge_command(kind, d, train_pairs, s1=s1, s0=s0)}`", key=key)
    return str(d)

