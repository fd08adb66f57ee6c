"""Checks that run before any stage work: every file and folder a command will read or write.

The CLI calls `check_inputs(cfg, command)` right after loading the config, before Ray starts,
so bad input stops it with one line (file, row and field, or the config key) instead of a
failure minutes later inside an actor. The checks read the prompt and pair files in full (the
same validation the stages run), and look at model and judge folders without loading them.

    summary = check_inputs(cfg, "generate")   # {"prompts": {...}, "models": {...}, ...}
"""

from __future__ import annotations

import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.data.pairs import read_pair_file
from cst_ray.data.sources import read_prompts
from cst_ray.models.resolve import check_model
from cst_ray.stages.common import STAGES
from cst_ray.stages.judge_checks import check_default_judge, check_judge_folder
from cst_ray.stages.preflight_checks import check_generation, check_pairs, check_prompts, check_writable_dir
from cst_ray.stages.redo import check_stages_redoable
from cst_ray.training.fit import check_training

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
    for part, fn in (("prompts", check_prompts), ("generation", check_generation), ("pairs", check_pairs),
                     ("training", check_training), ("eval", _eval)):
        if part in parts:
            summary.update(fn(cfg, summary["models"]))
    return summary


def _eval(cfg: CSTConfig, models: dict) -> dict:
    e = cfg.eval
    out: dict = {"judge": e.judge}
    if e.benign_limit:
        out["eval_benign"] = read_prompts(e.benign_source)[1].as_dict()
    if cfg.pairs.extra_tasks_eval_fraction:  # their held-out rows are scored for every model
        out.update(check_pairs(cfg, models))
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
