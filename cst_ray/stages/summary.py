"""The run's `summary.md`: scores, aims met or not, stage times."""

from __future__ import annotations

import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.evaluation.audit import audit_line

log = logging.getLogger(__name__)


def tuned_model(cfg: CSTConfig, scores: dict) -> str | None:
    """The model the aims are about: CST where it was trained (an experiment also trains the
    DPO baseline), else the first trained method."""
    return "cst" if "cst" in scores else next((m for m in cfg.train.methods if m in scores), None)


def aims_table(cfg: CSTConfig, report: dict) -> list[dict]:
    """Each aim of `eval.aims` against the tuned model's figure, with the base model's beside it."""
    a = cfg.eval.aims
    scores = report["scores"]
    tuned = tuned_model(cfg, scores)
    checks = [("S1", "S1", ">=", a.s1_min), ("S0 (training wording)", "S0", ">=", a.s0_min)]
    checks += [(f"S0 (unseen wording {v.rsplit('_', 1)[-1]})", v, ">=", a.s0_unseen_min)
               for v in next(iter(scores.values())) if v.startswith("S0_unseen")]
    over = report.get("over_refusal", {}).get("scores", {})
    rows = []
    for label, key, op, target in checks + [("over-refusal", "over_refusal", "<=", a.over_refusal_max)]:
        table = over if key == "over_refusal" else {m: s[key] for m, s in scores.items()}
        value = table.get(tuned, {}).get("value") if tuned else None
        met = value is not None and (value >= target if op == ">=" else value <= target)
        rows.append(dict(aim=label, target=f"{op} {target:g}", tuned=value, base=table.get("base", {}).get("value"),
                         met=met))
    return rows


def aims_markdown(cfg: CSTConfig, report: dict) -> list[str]:
    rows = aims_table(cfg, report)
    tuned = tuned_model(cfg, report["scores"]) or "tuned"

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    met = sum(r["met"] for r in rows)
    lines = [f"## Aims: {met} of {len(rows)} met", "", f"| aim | target | {tuned} | base | met |", "|---|---|---|---|---|"]
    lines += [f"| {r['aim']} | {r['target']} | {fmt(r['tuned'])} | {fmt(r['base'])} | {'yes' if r['met'] else 'no'} |"
              for r in rows]
    return lines + [""]


def summary_markdown(cfg: CSTConfig, report: dict, stage_times: dict, reused: list[str] = ()) -> str:
    variants = [k for k in next(iter(report["scores"].values()))]
    lines = [f"# cst-ray run: `{cfg.run_dir}`", "",
             f"Model `{cfg.model.name_or_path}`, judge `{report['judge']}`, "
             f"{report['held_out_prompts']} held-out prompts. S1 = share safe under s1; "
             f"S0 = share not safe under an uncensored prompt. Value [Wilson 95% CI] (n).", "",
             *([audit_line(report["judge_audit"]), ""] if report.get("judge_audit") else []),
             "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for model, scores in report["scores"].items():
        cells = [f"{scores[v]['value']:.2f} [{scores[v]['ci95'][0]:.2f}, {scores[v]['ci95'][1]:.2f}] (n={scores[v]['n']})"
                 for v in variants]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [""] + aims_markdown(cfg, report)
    lines += ["System prompts:", ""] + [f"- `{k}`: {v}" for k, v in report["variants"].items()]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {'reused' if k in reused else f'{v:.1f}'} |" for k, v in stage_times.items()]
    if reused:
        lines += ["", f"Reused from an earlier run in this folder, made with the same settings: {', '.join(reused)}."]
    return "\n".join(lines) + "\n"
