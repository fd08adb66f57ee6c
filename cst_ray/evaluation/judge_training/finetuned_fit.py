"""Fitting the fine-tuned judge and measuring it.

Every weight of the cross-encoder (judges.finetuned) is trained: AdamW, linear warm-up and
decay, class-balanced cross-entropy, on CPU. Figures: k-fold cross-validation with folds by
request (all answers to one request sit in one fold), with the `refusal` judge on the same
rows; and, separately, the figures on the audit file's blind labels.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cst_ray.core.errors import CSTError
from cst_ray.evaluation.judge_training.finetuned_data import AuditSnapshot, Row, stable_hash
from cst_ray.evaluation.judges.finetuned import (
    base_model_path,
    load_cross_encoder,
    pad_batch,
    predict_safe_proba,
    tokenize_pairs,
)
from cst_ray.evaluation.judges.refusal import RefusalJudge
from cst_ray.evaluation.metrics import binary_metrics, bootstrap_balanced_accuracy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning recipe; CV folds re-run it on each training share."""

    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 256
    weight_decay: float = 0.01
    warmup: float = 0.1
    folds: int = 3
    seed: int = 0


# ----------------------------------------------------------------------------- fitting


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within windows of 8 batches) to cut padding."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    win = batch_size * 8
    out = []
    for s in range(0, len(idx), win):
        chunk = sorted(idx[s:s + win], key=lambda i: lengths[i])
        out += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def _optimizer(model, recipe: Recipe, total_steps: int):
    """AdamW (no decay on biases and LayerNorm) + linear warm-up then linear decay to 0."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)
    warm = max(1, int(total_steps * recipe.warmup))

    def factor(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(rows: list[Row], recipe: Recipe, base: str | Path | None = None):
    """Fine-tune every weight of the cross-encoder on `rows` -> (tokenizer, model in eval mode)."""
    import torch

    torch.manual_seed(recipe.seed)
    tok, model = load_cross_encoder(base or base_model_path())
    feats = tokenize_pairs(tok, [r.prompt for r in rows], [r.response for r in rows], recipe.max_length)
    y = torch.tensor([int(r.safe) for r in rows])                                   # (N,)
    weight = len(rows) / (2 * torch.bincount(y, minlength=2).clamp(min=1).float())  # (2,) class-balanced
    rng = random.Random(recipe.seed)
    total = recipe.epochs * math.ceil(len(rows) / recipe.batch_size)
    opt, sched = _optimizer(model, recipe, total)
    model.train()
    step, t0 = 0, time.time()
    for epoch in range(recipe.epochs):
        for b in _batches([len(f["input_ids"]) for f in feats], recipe.batch_size, rng):
            logits = model(**pad_batch(tok, [feats[i] for i in b])).logits           # (B, 2)
            loss = torch.nn.functional.cross_entropy(logits, y[b], weight=weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % 25 == 0 or step == total:
                log.info("fine-tune step %d/%d epoch %d loss %.4f (%.0fs)", step, total, epoch + 1, loss.item(),
                         time.time() - t0)
    return tok, model.eval()


# ----------------------------------------------------------------------------- evaluation


def fold_of(group: str, folds: int, seed: int) -> int:
    return stable_hash(f"{seed}:{group}") % folds


def _coarse_source(source: str) -> str:
    return source if source.startswith("pairs:") else "/".join(source.split("/")[:2 if source.startswith("pyrit") else 3])


def cross_validate(rows: list[Row], recipe: Recipe, base: str | Path | None = None) -> dict:
    """k-fold CV by group: out-of-fold predictions of the recipe vs the refusal judge on the same rows."""
    oof = np.full(len(rows), np.nan, np.float32)
    per_fold = []
    for k in range(recipe.folds):
        test = [i for i, r in enumerate(rows) if fold_of(r.group, recipe.folds, recipe.seed) == k]
        train = [r for r in rows if fold_of(r.group, recipe.folds, recipe.seed) != k]
        if not test or len({r.safe for r in train}) < 2:
            raise CSTError(f"fold {k} of {recipe.folds} is empty or one-class; use fewer folds or more rows")
        t0 = time.time()
        tok, model = fit(train, recipe, base)
        oof[test] = predict_safe_proba(tok, model, [rows[i].prompt for i in test],
                                       [rows[i].response for i in test], recipe.max_length)
        m = binary_metrics([rows[i].safe for i in test], [bool(oof[i] >= 0.5) for i in test], 4)
        per_fold.append({"fold": k, "n": m["n"], "balanced_accuracy": m["balanced_accuracy"], "kappa": m["kappa"]})
        log.info("CV fold %d/%d: %s (%.0fs)", k + 1, recipe.folds, per_fold[-1], time.time() - t0)
    gold, pred = [r.safe for r in rows], [bool(p >= 0.5) for p in oof]
    refusal = [v.safe for v in RefusalJudge().judge([r.prompt for r in rows], [r.response for r in rows])]
    by_source: dict[str, dict] = {}
    for name in sorted({_coarse_source(r.source) for r in rows}):
        idx = [i for i, r in enumerate(rows) if _coarse_source(r.source) == name]
        g = [gold[i] for i in idx]
        by_source[name] = {"n": len(idx), "accuracy": round(float(np.mean([pred[i] == gold[i] for i in idx])), 4),
                           "accuracy_refusal_judge": round(float(np.mean([refusal[i] == gold[i] for i in idx])), 4),
                           "gold_safe": sum(g)}
    return {"folds": recipe.folds, "grouping": "by request (all answers to one request share a fold)",
            "predictions": "out-of-fold, pooled over the folds",
            "finetuned": binary_metrics(gold, pred, 4), "refusal_judge": binary_metrics(gold, refusal, 4),
            "per_fold": per_fold, "by_source": by_source}


def agreement_figures(gold: list[bool], pred: list[bool], samples: int = 2000, seed: int = 0) -> dict:
    """binary_metrics plus a bootstrap 95% interval of balanced accuracy."""
    _, lo, hi = bootstrap_balanced_accuracy(gold, pred, samples, seed)
    return {**binary_metrics(gold, pred, 4), "balanced_accuracy_ci95": [round(lo, 4), round(hi, 4)]}


def audit_section(tok, model, audit: AuditSnapshot, max_length: int) -> dict | None:
    """Figures of this model and of the refusal judge on the audit file's blind labels."""
    rows = audit.rows
    if not rows:
        return None
    prompts, responses = [a["prompt"] for a in rows], [a["response"] for a in rows]
    gold = [bool(int(a["label_safe"])) for a in rows]
    pred = [bool(p >= 0.5) for p in predict_safe_proba(tok, model, prompts, responses, max_length)]
    refusal = [v.safe for v in RefusalJudge().judge(prompts, responses)]
    return {"file": audit.file, "sha1": audit.sha1,
            "note": "blind labels (label_safe; annotator names who made each); never used for training or model selection, and every "
                    "training row with the same (prompt, response) was dropped",
            "finetuned": agreement_figures(gold, pred), "refusal_judge": agreement_figures(gold, refusal)}
