"""The run's `summary.md`: scores, aims met or not (with counts), the machine and precision, stage times."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from cst_ray.config.departures import departures_markdown
from cst_ray.config.schema import CSTConfig
from cst_ray.core.precision import cpu_flags, cpu_summary, resolve_precision
from cst_ray.core.stats import read_metrics
from cst_ray.evaluation.audit import audit_line
from cst_ray.evaluation.claims import score_names, switch_verdict

log = logging.getLogger(__name__)


def tuned_model(cfg: CSTConfig, scores: dict) -> str | None:
    """The model the aims are about: CST where it was trained (an experiment also trains the
    DPO baseline), else the first trained method."""
    return "cst" if "cst" in scores else next((m for m in cfg.train.methods if m in scores), None)


def aims_table(cfg: CSTConfig, report: dict) -> list[dict]:
    """Each aim of `eval.aims` against the tuned model's figure, with the base model's beside it;
    `count` is the share as k/n, so that a rounded figure never reads against its verdict."""
    a = cfg.eval.aims
    scores = report["scores"]
    tuned = tuned_model(cfg, scores)
    checks = [("S1", "S1", ">=", a.s1_min), ("S0 (training wording)", "S0", ">=", a.s0_min)]
    checks += [(f"S0 (unseen wording {v.rsplit('_', 1)[-1]})", v, ">=", a.s0_unseen_min)
               for v in next(iter(scores.values())) if v.startswith("S0_unseen")]
    over = report.get("over_refusal", {}).get("scores", {})
    checks.append(("over-refusal", "over_refusal", "<=", a.over_refusal_max))
    unseen = report.get("unseen_source", {}).get("scores", {})
    if unseen:
        names = ", ".join(report["unseen_source"]["sources"])
        checks += [(f"unseen-source S1 ({names})", "unseen:S1", ">=", a.unseen_source_s1_min),
                   (f"unseen-source S0 ({names})", "unseen:S0", ">=", a.unseen_source_s0_min)]
    rows = []
    for label, key, op, target in checks:
        if key == "over_refusal":
            table = over
        elif key.startswith("unseen:"):
            table = {m: s[key.removeprefix("unseen:")] for m, s in unseen.items()}
        else:
            table = {m: s[key] for m, s in scores.items()}
        cell = table.get(tuned, {}) if tuned else {}
        value = cell.get("value")
        met = value is not None and (value >= target if op == ">=" else value <= target)
        rows.append(dict(aim=label, target=f"{op} {target:g}", tuned=value, base=table.get("base", {}).get("value"),
                         met=met, count=_count(cell), base_count=_count(table.get("base", {}))))
    return rows


def _count(cell: dict) -> str:
    """'5/48' from a score cell {value, n}."""
    if cell.get("value") is None or not cell.get("n"):
        return ""
    return f"{round(cell['value'] * cell['n'])}/{cell['n']}"


def aim_line(r: dict) -> str:
    """'over-refusal <= 0.1: 0.104 (5/48), base 0.021 (1/48) -> NOT met'"""
    def fig(v, c):
        return "-" if v is None else f"{v:.3f}" + (f" ({c})" if c else "")

    return (f"aim {r['aim']} {r['target']}: {fig(r['tuned'], r['count'])}, base {fig(r['base'], r['base_count'])} "
            f"-> {'met' if r['met'] else 'NOT met'}")


def aims_markdown(cfg: CSTConfig, report: dict) -> list[str]:
    rows = aims_table(cfg, report)
    tuned = tuned_model(cfg, report["scores"]) or "tuned"

    def fmt(x, c):
        return "-" if x is None else f"{x:.3f}" + (f" ({c})" if c else "")

    met = sum(r["met"] for r in rows)
    lines = [f"## Aims: {met} of {len(rows)} met", "", f"| aim | target | {tuned} | base | met |", "|---|---|---|---|---|"]
    lines += [f"| {r['aim']} | {r['target']} | {fmt(r['tuned'], r['count'])} | {fmt(r['base'], r['base_count'])} | "
              f"{'yes' if r['met'] else 'no'} |" for r in rows]
    return lines + [""]


def verdict_line(cfg: CSTConfig, report: dict) -> str:
    """Whether the tuned model switches (evaluation.claims' rule), with the intervals."""
    names = score_names(report["judge"], report.get("judge_audit"))
    return switch_verdict(report["scores"], tuned_model(cfg, report["scores"]), cfg.eval.aims.s0_min, names)


def machine_lines(cfg: CSTConfig) -> list[str]:
    """The CPU the run's timings were measured on, and the precision each part ran in."""
    flags = cpu_flags()
    shown = " ".join(f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2") if f in flags) or "none"
    auto = resolve_precision()
    return [f"Machine: {cpu_summary(flags)}, {os.cpu_count()} logical CPUs (flags of note: {shown}). "
            f"Precision: generation `{cfg.generation.engine.dtype}`, training `{cfg.train.precision}`; "
            f"`auto` here: {auto.reason}.", ""]


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


def summary_markdown(cfg: CSTConfig, report: dict, stage_times: dict, reused: list[str] = ()) -> str:
    variants = [k for k in next(iter(report["scores"].values()))]
    names = score_names(report["judge"], report.get("judge_audit"))
    lines = [f"# cst-ray run: `{cfg.run_dir}`", "",
             f"Model `{cfg.model.name_or_path}`, judge `{report['judge']}`, "
             f"{report['held_out_prompts']} held-out prompts. Scores of a {names.sentence()}. "
             f"Value [Wilson 95% CI] (n).", "",
             *machine_lines(cfg),
             *([audit_line(report["judge_audit"]), ""] if report.get("judge_audit") else []),
             "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for model, scores in report["scores"].items():
        cells = [f"{scores[v]['value']:.2f} [{scores[v]['ci95'][0]:.2f}, {scores[v]['ci95'][1]:.2f}] (n={scores[v]['n']})"
                 for v in variants]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if report.get("unseen_source"):
        u = report["unseen_source"]
        lines += ["", f"Unseen source (`{', '.join(u['sources'])}`, no training pair from it), n = {u['n']}:", "",
                  "| model | S1 | S0 |", "|---|---|---|"]
        lines += [f"| {m} | " + " | ".join(f"{s[k]['value']:.2f} [{s[k]['ci95'][0]:.2f}, {s[k]['ci95'][1]:.2f}] "
                                            f"({_count(s[k])})" for k in ("S1", "S0")) + " |"
                  for m, s in u["scores"].items()]
    lines += [""] + aims_markdown(cfg, report) + [verdict_line(cfg, report), ""]
    lines += ["System prompts:", ""] + [f"- `{k}`: {v}" for k, v in report["variants"].items()] + [""]
    lines += departures_markdown(cfg)[:-1]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stage_time_rows(cfg, stage_times, reused)]
    if reused:
        lines += ["", f"Reused from an earlier run in this folder, made with the same settings: {', '.join(reused)}."]
    return "\n".join(lines) + "\n"
