"""Where trained judges live: the default folder of each kind, the command that trains one into
a folder, and the error a judge raises when its folder holds no trained judge (a judge never
trains itself; `cst-ray train-judge` does, cst_ray.evaluation.judge_training)."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT
from cst_ray.core.cache import cache_dir
from cst_ray.core.errors import CSTError

TRAINED_KINDS = ("classifier", "finetuned")


def default_judge_dir(kind: str, train_pairs: list[str] = ()) -> Path:
    """The cache folder a `kind` judge is read from when no path is given: one per set of extra
    pair files (and, for finetuned, per recipe version)."""
    if kind == "finetuned":
        from cst_ray.evaluation.judges.finetuned import RECIPE_VERSION  # noqa: PLC0415 (cycle: finetuned -> folders)

        name = f"finetuned-minilm-v{RECIPE_VERSION}"
    elif kind == "classifier":
        name = "classifier-minilm-pyrit"
    else:
        raise ValueError(f"no trained judge of kind {kind!r} (known: {', '.join(TRAINED_KINDS)})")
    if train_pairs:
        key = "|".join(f"{Path(f).resolve()}:{Path(f).stat().st_size}" for f in sorted(train_pairs))
        name += "-pairs-" + hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir() / "judges" / name


def train_judge_command(kind: str, output: str | Path, pair_files: list[str] = (), *, s1: str = "",
                        s0: str = "") -> str:
    """The `cst-ray train-judge` line that trains a `kind` judge into `output`. `s1` / `s0`: the
    system prompts of the pair files' rows, named only when there are pair files and they are not
    cst-ray's defaults (s0 only for finetuned: the classifier reads s1 rows alone)."""
    parts = ["cst-ray train-judge", f"--kind {kind}", f"--output {shlex.quote(str(output))}"]
    parts += [f"--pairs {shlex.quote(str(f))}" for f in pair_files]
    if pair_files and s1 and s1 != S1_DEFAULT:
        parts.append(f"--s1 {shlex.quote(s1)}")
    if pair_files and kind == "finetuned" and s0 and s0 != S0_DEFAULT:
        parts.append(f"--s0 {shlex.quote(s0)}")
    return " ".join(parts)


class JudgeNotTrainedError(CSTError):
    """A `classifier` or `finetuned` judge asked for a folder without a complete trained judge."""

    def __init__(self, kind: str, folder: str | Path, command: str, missing: str = ""):
        self.kind, self.folder, self.command = kind, str(folder), command
        super().__init__(f"no trained {kind} judge in {folder}" + (f" ({missing} missing)" if missing else "")
                         + f"; judges do not train themselves: train one with `{command}`")
