"""Preflight of a trained judge's folder (`eval.judge_path`, or the default folder read when none
is given): its card and weights are there, else one error that names the key, the folder and the
`cst-ray train-judge` line that trains one there (a judge never trains itself)."""

from __future__ import annotations

import json
from pathlib import Path

from cst_ray.core.errors import ConfigError
from cst_ray.evaluation.judges import classifier, finetuned
from cst_ray.evaluation.judges.folders import default_judge_dir, train_judge_command


def judge_folder_problem(kind: str, d: Path) -> str:
    """What a `cst-ray train-judge --kind <kind>` folder lacks (card, weights, a readable card); "" = nothing."""
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
    problem = judge_folder_problem(kind, Path(path))
    if problem:
        raise ConfigError(f"{problem}; train one with `{train_judge_command(kind, path, train_pairs, s1=s1, s0=s0)}`",
                          key=key)


def check_default_judge(kind: str, train_pairs: list[str], key: str, *, s1: str = "", s0: str = "") -> str:
    """A `kind` judge given no folder reads the default one (judges.folders); a judge never trains
    itself, so that folder must hold a trained judge -> the folder, else a ConfigError naming `key`,
    the folder and the command that trains one there."""
    d = default_judge_dir(kind, list(train_pairs))
    problem = judge_folder_problem(kind, d)
    if problem:
        raise ConfigError(f"no trained {kind} judge in its default folder, read when no judge folder is given "
                          f"({problem}); judges do not train themselves: train one with "
                          f"`{train_judge_command(kind, d, train_pairs, s1=s1, s0=s0)}`", key=key)
    return str(d)

