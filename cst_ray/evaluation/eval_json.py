"""What `eval.json` holds: the scores per model and variant, the judge with its audit and card,
degenerate shares, over-refusal; or, with `policies`, the policy matrix."""

from __future__ import annotations

from cst_ray.config.schema import CSTConfig
from cst_ray.data.policies import policy_wordings
from cst_ray.evaluation.audit import audit_figures
from cst_ray.evaluation.judges.base import Judge
from cst_ray.evaluation.variants import eval_variants


def policy_eval_json(cfg: CSTConfig, held: list[dict], seen: int, per_model: dict) -> dict:
    """eval.json for `policies`: the matrix per model, the wordings, the judge and its audit."""
    e = cfg.eval
    judge_model = (e.judge_model or cfg.model.name_or_path) if e.judge in ("llm", "cascade") else ""
    return {"judge": e.judge, "judge_audit": audit_figures(e.judge, judge_model, e.judge_question),
            "held_out_prompts": len(held), "held_out_dropped_seen_in_training": seen,
            "scores": {m: d["adherence"] for m, d in per_model.items()},  # adherence per wording
            "policies": {"wordings": {v: {"policy": n, "system": w} for v, n, w in policy_wordings(cfg.policies)},
                         "behaviours": {p.name: {"default": p.default, "answer": p.answer, "refuse": p.refuse}
                                        for p in cfg.policies},
                         "models": per_model}}


def eval_json(cfg: CSTConfig, judge: Judge, held: list[dict], seen: int, per_model: dict, *, benign: bool,
              unseen: tuple[int, int] = (0, 0)) -> dict:
    """eval.json: scores per model and variant, the judge and its card, over-refusal, and the
    unseen source's scores (`unseen`: its prompts, and those dropped as training prompts)."""
    def as_dicts(scores: dict) -> dict:
        return {k: s.as_dict() for k, s in scores.items()}

    e = cfg.eval
    judge_model = (e.judge_model or cfg.model.name_or_path) if e.judge in ("llm", "cascade") else ""
    report = {"judge": e.judge, "judge_audit": audit_figures(e.judge, judge_model, e.judge_question),
              "held_out_prompts": len(held), "held_out_dropped_seen_in_training": seen,
              "variants": dict(eval_variants(cfg)), "scores": {m: as_dicts(r["scores"]) for m, r in per_model.items()}}
    if judge.card:
        report["judge_card"] = {"path": judge.path, "heldout": judge.card.get("heldout"),
                                "heldout_refusal_judge": judge.card.get("heldout_refusal_judge")}
    if judge.stats:
        report["judge_stats"] = dict(judge.stats)
    report["degenerate_share"] = {m: r["degenerate"] for m, r in per_model.items()}
    if any("by_refusal" in r for r in per_model.values()):
        report["scores_refusal_judge"] = {m: as_dicts(r["by_refusal"]) for m, r in per_model.items()}
    if benign:
        report["over_refusal"] = {"source": cfg.eval.benign_source, "system": "s1",
                                  "scores": {m: r["over_refusal"].as_dict() for m, r in per_model.items()}}
    if unseen[0]:
        report["unseen_source"] = {"sources": list(cfg.eval.unseen_sources), "n": unseen[0],
                                   "dropped_seen_in_training": unseen[1],
                                   "scores": {m: as_dicts(r["unseen"]) for m, r in per_model.items()}}
    return report
