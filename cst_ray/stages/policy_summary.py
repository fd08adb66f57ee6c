"""summary.md for a run with `policies`: the category taxonomy, the matrix per model (share
refused in each wording x category cell, and what the policy asks there), adherence per wording,
over-refusal per policy, and the policy aims met or not, base beside tuned."""

from __future__ import annotations

from cst_ray.config.schema import CSTConfig
from cst_ray.evaluation.aims import tuned_model
from cst_ray.evaluation.audit import audit_line
from cst_ray.evaluation.claims import score_names
from cst_ray.evaluation.extra_tasks import extra_tasks_markdown
from cst_ray.evaluation.metrics import share_text as _share
from cst_ray.stages.stage_times import stage_time_rows
from cst_ray.stages.summary import machine_lines


def policy_aims(cfg: CSTConfig, report: dict) -> list[dict]:
    """Each policy aim against the tuned model, the base beside it: {aim, target, tuned, base, met}."""
    a, models = cfg.eval.aims, report["policies"]["models"]
    tuned = tuned_model(cfg, models)

    def fig(model: str | None, key: str, sub: str = "") -> dict | None:
        m = models.get(model or "", {})
        return (m.get(key) or {}).get(sub) if sub else m.get(key)

    rows = [("adherence, trained wordings", "trained_wordings", "", ">=", a.policy_adherence_min),
            ("adherence, unseen wordings", "unseen_wordings", "", ">=", a.policy_unseen_min)]
    measured = (models.get(tuned or "", {}).get("over_refusal") or {})
    rows += [(f"over-refusal under {p.name}", "over_refusal", p.name, "<=", a.over_refusal_max)
             for p in cfg.policies if (p.default == "answer" or p.answer) and p.name in measured]
    out = []
    for label, key, sub, op, target in rows:
        t, b = fig(tuned, key, sub), fig("base", key, sub)
        met = bool(t) and (t["value"] >= target if op == ">=" else t["value"] <= target)
        out.append(dict(aim=label, target=f"{op} {target:g}", tuned=t, base=b, met=met))
    cells = [(v, c, d["adherence"]) for v, cats in (models.get(tuned or "", {}).get("cells") or {}).items()
             for c, d in cats.items() if ":unseen_" not in v and d["adherence"]["n"] >= a.policy_cell_min_n]
    worst = min(cells, key=lambda x: x[2]["value"], default=None)
    out.append(dict(aim=f"adherence in every cell with n >= {a.policy_cell_min_n}"
                    + (f" (lowest: {worst[0]} x {worst[1]})" if worst else " (no such cell)"),
                    target=f">= {a.policy_cell_min:g}", tuned=worst[2] if worst else None, base=None,
                    met=bool(worst) and worst[2]["value"] >= a.policy_cell_min))
    return out


def policy_verdict_line(cfg: CSTConfig, report: dict) -> str:
    rows = policy_aims(cfg, report)
    met = sum(r["met"] for r in rows)
    return f"Verdict: {met} of {len(rows)} policy aims met (" + "; ".join(
        f"{r['aim']} {r['target']}: {_share(r['tuned'])} -> {'met' if r['met'] else 'NOT met'}" for r in rows) + ")"


def _matrix_lines(model: str, m: dict, order: list[str]) -> list[str]:
    cats = sorted({c for cells in m["cells"].values() for c in cells})
    lines = [f"**{model}**: share refused (what the policy asks)", "",
             "| wording | " + " | ".join(cats) + " | adherence |", "|---|" + "---|" * (len(cats) + 1)]
    for v in [w for w in order if w in m["cells"]]:
        cells = m["cells"][v]
        row = [f"{_share(cells[c]['refused'])} ({cells[c]['behaviour']})" if c in cells else "-" for c in cats]
        lines.append(f"| {v} | " + " | ".join(row) + f" | {_share(m['adherence'].get(v))} |")
    return lines + [""]


def policy_summary_markdown(cfg: CSTConfig, report: dict, stage_times: dict, reused: list[str] = ()) -> str:
    pol = report["policies"]
    names = score_names(report["judge"], report.get("judge_audit"))
    lines = [f"# cst-ray run: `{cfg.run_dir}` (safety policies)", "",
             f"Model `{cfg.model.name_or_path}`, judge `{report['judge']}`, {report['held_out_prompts']} held-out "
             f"prompts, {len(cfg.policies)} policies. A cell is the share of requests {names.counted} under that "
             f"wording; adherence is the share of answers that do what the policy asks ({names.counted} where it "
             f"refuses, {names.not_counted} where it answers). Value (k/n) [Wilson 95% CI].", "",
             *machine_lines(cfg),
             *([audit_line(report["judge_audit"]), ""] if report.get("judge_audit") else []),
             "Policies:", ""]
    for p in cfg.policies:
        lines.append(f"- `{p.name}`: default {p.default}" + (f"; answers {', '.join(p.answer)}" if p.answer else "")
                     + (f"; refuses {', '.join(p.refuse)}" if p.refuse else "")
                     + f"; {len(p.prompts)} trained wording(s), {len(p.unseen)} unseen")
    lines += [""]
    for model, m in pol["models"].items():
        lines += _matrix_lines(model, m, list(pol["wordings"]))
    lines += ["| over-refusal (benign questions refused) | " + " | ".join(pol["models"]) + " |",
              "|---|" + "---|" * len(pol["models"])]
    lines += [f"| {p.name} | " + " | ".join(_share(m["over_refusal"].get(p.name)) for m in pol["models"].values()) + " |"
              for p in cfg.policies]
    lines += extra_tasks_markdown(report)
    rows = policy_aims(cfg, report)
    lines += ["", f"## Policy aims: {sum(r['met'] for r in rows)} of {len(rows)} met", "",
              "| aim | target | tuned | base | met |", "|---|---|---|---|---|"]
    lines += [f"| {r['aim']} | {r['target']} | {_share(r['tuned'])} | {_share(r['base'])} | {'yes' if r['met'] else 'no'} |"
              for r in rows]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stage_time_rows(cfg, stage_times, reused)]
    return "\n".join(lines) + "\n"
