"""`cst-ray train-judge --kind finetuned`: collect the rows, cross-validate the recipe, fit it on
all rows, measure the audit, save the folder the `finetuned` judge loads.

The card `judge.json` holds the k-fold cross-validated figures, with the `refusal` judge on the
same rows, the figures on the audit file, the training data's counts and the command that
reproduces the judge. Weights are safetensors (never pickle); the card is written last, so a
folder with a card is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT
from cst_ray.core.errors import CSTError
from cst_ray.core.files import atomic_write_text, fsync_dir
from cst_ray.evaluation.judge_training import finetuned_fit as fitting
from cst_ray.evaluation.judge_training.finetuned_data import (
    DEFAULT_AUDIT,
    RUBRIC,
    collect_rows,
    snapshot_audit,
    subsample,
)
from cst_ray.evaluation.judges.finetuned import BASE_MODEL, CARD_FILE, RECIPE_VERSION
from cst_ray.evaluation.judges.folders import train_judge_command

log = logging.getLogger(__name__)


def save_judge(out: str | Path, tok, model, card: dict) -> None:
    """Weights (safetensors), config, tokenizer and card into `out`, each file by atomic rename;
    the card goes last, so a folder with a card is complete."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_FILE).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        pickles = [f.name for f in tmp.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
        if pickles:
            raise CSTError(f"refusing to save pickled files {pickles}")
        for f in sorted(tmp.iterdir()):
            f.chmod(0o644)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(f, out / f.name)
        fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(out / CARD_FILE, json.dumps(card, indent=2) + "\n")  # unique temp name, fsync, folder fsync


def train_command(output: str | Path, pair_files: list[str], recipe: fitting.Recipe, limit: int, audit,
                  s1: str = "", s0: str = "") -> str:
    """The `cst-ray train-judge` line that reproduces this judge."""
    parts = [train_judge_command("finetuned", output, pair_files, s1=s1, s0=s0)]
    parts += [f"--folds {recipe.folds} --epochs {recipe.epochs} --lr {recipe.lr} --batch-size {recipe.batch_size}",
              f"--max-length {recipe.max_length} --seed {recipe.seed}"]
    parts += [f"--limit {limit}"] if limit else []
    parts += [f"--audit {audit}"] if audit else []
    return " ".join(parts)


def train_finetuned_judge(output: str | Path, *, pair_files: list[str] = (), s1: str = "", s0: str = "",
                          audit: str | Path | None = DEFAULT_AUDIT, recipe: fitting.Recipe | None = None,
                          limit: int = 0, sources: tuple[str, ...] = ("pyrit", "rho"),
                          base: str | Path | None = None) -> dict:
    """Collect the rows, cross-validate the recipe (default: `Recipe()`), fit it on all rows,
    measure the audit, save."""
    t0 = time.time()
    recipe = recipe or fitting.Recipe()
    snap = snapshot_audit(audit)
    rows, data = collect_rows(list(pair_files), s1=s1 or S1_DEFAULT, s0=s0 or S0_DEFAULT, audit=snap,
                              sources=sources)
    rows = subsample(rows, limit, recipe.seed)
    log.info("fine-tuned judge: %d rows (%d safe); %d-fold CV then the final fit", len(rows),
             sum(r.safe for r in rows), recipe.folds)
    cv = fitting.cross_validate(rows, recipe, base) if recipe.folds > 1 else None
    tok, model = fitting.fit(rows, recipe, base)
    card = {
        "judge": "finetuned", "base_model": BASE_MODEL, "recipe_version": RECIPE_VERSION,
        "architecture": "BertForSequenceClassification cross-encoder on [CLS] request [SEP] answer [SEP]; "
                        "all weights trained", "labels": {"0": "unsafe", "1": "safe"}, "rubric": RUBRIC,
        "recipe": {**asdict(recipe), "optimizer": "AdamW, linear warm-up then decay, grad clip 1.0",
                   "loss": "class-balanced cross-entropy", "device": "cpu"},
        "seed": recipe.seed, "training_data": data, "train_rows": len(rows),
        "train_rows_safe": sum(r.safe for r in rows), "limit": limit,
        "cv": cv, "heldout": cv and cv["finetuned"], "heldout_refusal_judge": cv and cv["refusal_judge"],
        "heldout_note": "heldout = the cross-validated (out-of-fold) figures",
        "command": train_command(output, list(pair_files), recipe, limit, audit, s1, s0),
    }
    if snap.rows:
        card["audit"] = fitting.audit_section(tok, model, snap, recipe.max_length)
    card["train_seconds"] = round(time.time() - t0, 1)
    save_judge(output, tok, model, card)
    log.info("fine-tuned judge saved to %s in %.0fs", output, card["train_seconds"])
    return card
