"""The extra configurable tasks' own behaviour (`pairs.extra_tasks`, e.g. the author's
truthfulness rows: an honest assistant's answer vs a persona's): on the rows held out of training
(`pairs.extra_tasks_eval_fraction`, by prompt), does each evaluated model prefer `chosen`?

    logp(y)          = sum over y's tokens of log p(token | system, prompt, y's tokens before it),
                       under the model's chat template, tokenized as training tokenizes a pair
                       (models/chat.py: prompt_ids, response_ids); fp32, never truncated
    accuracy         = share of rows with logp(chosen) > logp(rejected): k/n, Wilson 95% CI
    margin           = mean of logp(chosen) - logp(rejected), in nats (bootstrap 95% CI)
    margin_per_token = the same with each side's log-prob divided by its token count

Per task, and per system-prompt group within a task: the system prompt's first line where it
heads at least 10% of the task's scored rows, else "other" (the author's truthfulness rows: the
honest assistant vs ~120 personas). Up to `eval.extra_tasks_limit` rows per task, the first
held-out rows in file order, the same rows for every model.
"""

from __future__ import annotations

import logging
from collections import Counter

from cst_ray.config.schema import CSTConfig
from cst_ray.data.pairs import heldout_pair_rows
from cst_ray.evaluation.loglik import continuation_logps
from cst_ray.evaluation.metrics import bootstrap_mean, share_text, wilson_share
from cst_ray.models.chat import prompt_ids, response_ids

log = logging.getLogger(__name__)

GROUP_MIN_SHARE = 0.1  # a system prompt's first line is its own group from this share of a task's rows
OTHER = "other"


def heldout_rows(cfg: CSTConfig) -> tuple[dict[str, list[dict]], int]:
    """{task: its first `eval.extra_tasks_limit` held-out rows (0 = all)}, and the number of rows
    held out in all (tasks of `pairs.extra_tasks_select` only)."""
    p, limit = cfg.pairs, cfg.eval.extra_tasks_limit
    by_task: dict[str, list[dict]] = {}
    n = 0
    for path in p.extra_tasks:
        rows = heldout_pair_rows(path, fraction=p.extra_tasks_eval_fraction, tasks=tuple(p.extra_tasks_select),
                                 seed=cfg.data.seed)
        n += len(rows)
        for r in rows:
            kept = by_task.setdefault(r["task"], [])
            if not limit or len(kept) < limit:
                kept.append(r)
    return by_task, n


def system_groups(rows: list[dict], min_share: float = GROUP_MIN_SHARE) -> list[str]:
    """Each row's group: its system prompt's first line where that line heads >= `min_share` of
    `rows`, else "other"."""
    first = [(r["system"].strip().splitlines() or ["(no system prompt)"])[0].strip() for r in rows]
    counts = Counter(first)
    return [f if counts[f] >= min_share * len(rows) else OTHER for f in first]


def pair_logps(model, tok, rows: list[dict], batch_size: int = 4) -> list[dict]:
    """Per row: {chosen, rejected} summed response log-probs given (system, prompt), and each
    side's token count (`chosen_tokens`, `rejected_tokens`)."""
    seqs: list[tuple[list[int], int]] = []
    for r in rows:
        ctx = prompt_ids(tok, r["system"], r["prompt"])
        seqs += [(ctx + response_ids(tok, r["system"], r["prompt"], r[side]), len(ctx)) for side in ("chosen", "rejected")]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    lps = continuation_logps(model, seqs, pad, batch_size)
    return [{"chosen": float(c.sum()), "rejected": float(r.sum()), "chosen_tokens": len(c), "rejected_tokens": len(r)}
            for c, r in zip(lps[0::2], lps[1::2])]


def model_pair_logps(model_path: str, rows: list[dict], *, trust_remote_code: bool = False,
                     batch_size: int = 4) -> list[dict]:
    """`pair_logps` under the model in `model_path` (plain transformers, fp32; a GPU where there is one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the console shows cst-ray's lines; this runs in the driver
    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code).eval()
    if torch.cuda.is_available():
        model = model.cuda()
    return pair_logps(model, tok, rows, batch_size)


def preference_scores(logps: list[dict], *, samples: int = 1000, seed: int = 0) -> dict:
    """{accuracy: {value, ci95, n, count}, margin: {value, ci95, n}, margin_per_token: {...}}."""
    hits = [x["chosen"] > x["rejected"] for x in logps]
    per_token = [x["chosen"] / max(x["chosen_tokens"], 1) - x["rejected"] / max(x["rejected_tokens"], 1) for x in logps]
    return {"accuracy": {**wilson_share(hits).as_dict(), "count": sum(hits)},
            "margin": bootstrap_mean([x["chosen"] - x["rejected"] for x in logps], samples, seed).as_dict(),
            "margin_per_token": bootstrap_mean(per_token, samples, seed).as_dict()}


def extra_tasks_json(cfg: CSTConfig, by_task: dict[str, list[dict]], n_heldout: int,
                     logps: dict[str, list[dict]]) -> dict:
    """eval.json's `extra_tasks`: per task, and per group within it, each model's scores.
    `logps[model]` holds the log-probs of `by_task`'s rows, task after task."""
    def scores(idx: list[int], span: dict[str, list[dict]]) -> dict:
        return {m: preference_scores([v[i] for i in idx], samples=cfg.eval.bootstrap_samples, seed=cfg.data.seed)
                for m, v in span.items()}

    tasks, start = {}, 0
    for task, rows in by_task.items():
        span = {m: lp[start:start + len(rows)] for m, lp in logps.items()}
        start += len(rows)
        groups = system_groups(rows)
        order = sorted(set(groups), key=lambda g: (g == OTHER, -groups.count(g), g))
        tasks[task] = {"n": len(rows), "scores": scores(list(range(len(rows))), span),
                       "groups": {g: {"n": groups.count(g), "scores": scores([i for i, x in enumerate(groups) if x == g],
                                                                             span)} for g in order}}
    return {"files": list(cfg.pairs.extra_tasks), "eval_fraction": cfg.pairs.extra_tasks_eval_fraction,
            "limit_per_task": cfg.eval.extra_tasks_limit, "n_heldout": n_heldout, "n_scored": start,
            "margin_unit": "nats: summed log-prob of chosen minus rejected given (system, prompt)",
            "tasks": tasks}


def evaluate_extra_tasks(cfg: CSTConfig, models: dict[str, str]) -> dict:
    """{"extra_tasks": ...} for eval.json: every model of `models` ({name: folder}) scored on the
    extra tasks' held-out rows; {} when none are held out (`pairs.extra_tasks_eval_fraction` 0)."""
    if not (cfg.pairs.extra_tasks and cfg.pairs.extra_tasks_eval_fraction):
        return {}
    by_task, n = heldout_rows(cfg)
    rows = [r for rs in by_task.values() for r in rs]
    if not rows:
        log.warning("extra tasks: no row of pairs.extra_tasks is held out at pairs.extra_tasks_eval_fraction "
                    f"{cfg.pairs.extra_tasks_eval_fraction}; nothing to score")
    logps = {}
    for name, path in models.items():
        log.info(f"extra tasks: {name} scores {len(rows)} held-out rows ("
                 + ", ".join(f"{t}: {len(v)}" for t, v in by_task.items()) + ")")
        logps[name] = model_pair_logps(path, rows, trust_remote_code=cfg.model.trust_remote_code) if rows else []
    return {"extra_tasks": extra_tasks_json(cfg, by_task, n, logps)}


def _label(group: str, width: int = 48) -> str:
    """A group's name fit for a Markdown table cell."""
    text = group.replace("|", "/").replace("`", "'").replace("*", "")
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def extra_tasks_markdown(report: dict) -> list[str]:
    """summary.md / report.md lines for eval.json's `extra_tasks` ([] when absent): per task and
    group, each model's preference accuracy and mean margin."""
    x = report.get("extra_tasks")
    if not x:
        return []
    lines = ["", f"Extra configurable tasks (`pairs.extra_tasks`): {x['n_scored']} of the {x['n_heldout']} rows "
             "held out of training (by prompt) scored under each model. Preference accuracy: the share of rows whose "
             "chosen answer gets a higher summed log-prob than the rejected one given (system, prompt), k/n [Wilson "
             "95% CI]; margin: the mean log p(chosen) - log p(rejected), nats.", ""]
    if not x["tasks"]:
        return lines + ["No row is held out: raise `pairs.extra_tasks_eval_fraction`."]
    models = list(next(iter(x["tasks"].values()))["scores"])

    def row(task: str, group: str, d: dict) -> str:
        cells = [f"{share_text(s['accuracy'])}, margin {s['margin']['value']:+.2f}" for s in d["scores"].values()]
        return f"| {task} | {group} | " + " | ".join(cells) + " |"

    lines += ["| task | group | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for task, t in x["tasks"].items():
        lines.append(row(task, "all", t))
        lines += [row(task, _label(g), d) for g, d in t["groups"].items()]
    return lines
