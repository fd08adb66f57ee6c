"""The stage-time table of summary.md: each stage's wall time, and inside it the parts its
stats.json and training metrics record."""

from __future__ import annotations

import json
from pathlib import Path

from cst_ray.config.schema import CSTConfig
from cst_ray.core.stats import read_metrics


def stage_time_rows(cfg: CSTConfig, stage_times: dict, reused: list[str] = ()) -> list[tuple[str, str]]:
    """(stage or part, seconds) for summary.md: each stage, and inside it what the stats and
    metrics record: generate's y0 / critique / revision / benign, each method's reference pass,
    training steps and the rest (workers' start, load, export), evaluate's answers per model."""
    rows: list[tuple[str, str]] = []
    for name, secs in stage_times.items():
        rows.append((name, "reused" if name in reused else f"{secs:.1f}"))
        if name not in reused:
            rows += [(f"&nbsp;&nbsp;{part}", f"{v:.1f}") for part, v in _stage_parts(cfg, name)]
    return rows


def _stage_parts(cfg: CSTConfig, name: str) -> list[tuple[str, float]]:
    stats = _read_json(Path(cfg.run_dir) / name / "stats.json")
    if name == "generate":
        phases = stats.get("phase_s") or {}
        parts = [(f"{k} (chain)", phases[k]) for k in ("y0", "critique", "revision") if k in phases]
        return parts + ([("benign answers", stats["benign"]["stage_wall_s"])]
                        if "stage_wall_s" in (stats.get("benign") or {}) else [])
    if name == "train":
        out = []
        for method in cfg.train.methods:
            steps = read_metrics(Path(cfg.run_dir) / "train" / method / "metrics.jsonl")
            ref = sum(m.get("time/reference_pass_s", 0.0) for m in steps)
            step_s = sum(m.get("time/step_s", 0.0) for m in steps)
            wall = (stats.get(method) or {}).get("wall_s", 0.0)
            export = _read_json(Path(cfg.run_dir) / "train" / method / "export.json").get("export_s", 0.0)
            out += [(f"{method}: reference pass", ref), (f"{method}: {len(steps)} training steps", step_s),
                    (f"{method}: export", export),
                    (f"{method}: workers' start, model load", max(wall - ref - step_s - export, 0.0))]
        return out
    if name == "evaluate":
        return [(f"answers: {m}", g.get("wall_s", 0.0)) for m, g in (stats.get("generation") or {}).items()]
    return []


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
