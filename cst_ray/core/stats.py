"""Stage statistics and metric logs: JSON written atomically, JSONL read back."""

from __future__ import annotations

import json
from pathlib import Path

from cst_ray.core.files import atomic_write_text


def write_stats(path: str | Path, stats: dict) -> None:
    """Atomically: a stage's stats.json, written last, is what marks the stage complete."""
    atomic_write_text(path, json.dumps(stats, indent=2, sort_keys=True) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """Per-step metrics written by rank 0; a resumed run rewrites steps, the last write wins; a
    line a crash tore is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    by_step: dict[int, dict] = {}
    for line in p.read_text().splitlines():
        try:
            m = json.loads(line) if line.strip() else None
        except ValueError:  # a line torn by a crash (and the next one glued to it): skipped
            continue
        if isinstance(m, dict) and "step" in m:
            by_step[int(m["step"])] = m
    return [by_step[k] for k in sorted(by_step)]
