"""The run's `summary.md`: scores, aims met or not (with counts), the machine and precision, stage times."""

from __future__ import annotations

import os

from cst_ray.config.departures import departures_markdown
from cst_ray.config.schema import CSTConfig
from cst_ray.core.precision import cpu_flags, cpu_summary, resolve_precision
from cst_ray.evaluation.aims import aims_markdown, count_text, verdict_line
from cst_ray.evaluation.audit import audit_line
from cst_ray.evaluation.claims import score_names
from cst_ray.evaluation.extra_tasks import extra_tasks_markdown
from cst_ray.stages.stage_times import stage_time_rows


def machine_lines(cfg: CSTConfig) -> list[str]:
    """The CPU the run's timings were measured on, and the precision each part ran in."""
    flags = cpu_flags()
    shown = " ".join(f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2") if f in flags) or "none"
    auto = resolve_precision()
    return [f"Machine: {cpu_summary(flags)}, {os.cpu_count()} logical CPUs (flags of note: {shown}). "
            f"Precision: generation `{cfg.generation.engine.dtype}`, training `{cfg.train.precision}`; "
            f"`auto` here: {auto.reason}.", ""]


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
                                            f"({count_text(s[k])})" for k in ("S1", "S0")) + " |"
                  for m, s in u["scores"].items()]
    lines += extra_tasks_markdown(report)
    lines += [""] + aims_markdown(cfg, report) + [verdict_line(cfg, report), ""]
    lines += ["System prompts:", ""] + [f"- `{k}`: {v}" for k, v in report["variants"].items()] + [""]
    lines += departures_markdown(cfg)[:-1]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stage_time_rows(cfg, stage_times, reused)]
    if reused:
        lines += ["", f"Reused from an earlier run in this folder, made with the same settings: {', '.join(reused)}."]
    return "\n".join(lines) + "\n"
