"""The aims of `eval.aims` against a run's eval report: a table of aim, target, the tuned model's
figure and the base model's beside it, met or not; the lines and the markdown it is shown in, and
the verdict line (evaluation.claims' rule). Pure functions of (config, eval.json)."""

from __future__ import annotations

from cst_ray.config.schema import CSTConfig
from cst_ray.evaluation.claims import score_names, switch_verdict


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
                         met=met, count=count_text(cell), base_count=count_text(table.get("base", {}))))
    return rows


def count_text(cell: dict) -> str:
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
