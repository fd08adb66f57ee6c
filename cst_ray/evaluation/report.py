"""The run's and the experiment's report: `report.md` and `report.html` with PNG figures
(matplotlib, Agg).

Contents: the judge; S0/S1 and over-refusal per model with Wilson 95% intervals (table and bar
chart); training curves (loss, reward margin, reward accuracy per step for each method) and a
summary table; generation yield (kept, rejected by reason, benign pairs); for an experiment the
capability table; a few example answers under each system prompt, every model's, with the
judge's label.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.files import atomic_path, atomic_write_text
from cst_ray.core.stats import read_metrics
from cst_ray.data.sources import source_names
from cst_ray.evaluation.audit import audit_line
from cst_ray.evaluation.claims import ScoreNames, score_names
from cst_ray.evaluation.extra_tasks import extra_tasks_markdown
from cst_ray.evaluation.metrics import share_text
from cst_ray.evaluation.variants import BENIGN_VARIANT

_fmt = share_text  # '0.90 (43/48) [0.78, 0.96]'


def safety_figure(scores: dict, path: Path, names: ScoreNames) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(scores)
    variants = list(next(iter(scores.values())))
    x = np.arange(len(models))
    w = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(models), 3.6))
    for k, v in enumerate(variants):
        vals = [scores[m][v]["value"] for m in models]
        lo = [vals[i] - scores[m][v]["ci95"][0] for i, m in enumerate(models)]
        hi = [scores[m][v]["ci95"][1] - vals[i] for i, m in enumerate(models)]
        ax.bar(x + (k - (len(variants) - 1) / 2) * w, vals, w, yerr=[lo, hi], capsize=3, label=names.legend(v))
    ax.set_xticks(x, models)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("S1 / S0 per model (Wilson 95% CI)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def training_figure(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("loss", "loss"), ("rewards/margins", "reward margin"), ("rewards/accuracies", "reward accuracy")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (k, title) in zip(axes, keys):
        for method, rows in curves.items():
            ax.plot([r["step"] for r in rows], [r.get(k, float("nan")) for r in rows], label=method)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _fmt_delta(s: dict) -> str:
    lo, hi = s["ci95"]
    return f"{100 * s['value']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _examples(run: Path, model: str, per_variant: int) -> list[dict]:
    f = run / "evaluate" / f"labelled_{model}.parquet"
    if not f.is_file():
        return []
    rows = sorted(pq.read_table(f).to_pylist(), key=lambda r: (r["variant"] == BENIGN_VARIANT, r["prompt_id"], r["variant"]))
    harmful = sorted({r["prompt_id"] for r in rows if r["variant"] != BENIGN_VARIANT})[:per_variant]
    benign = sorted({r["prompt_id"] for r in rows if r["variant"] == BENIGN_VARIANT})[:max(1, per_variant // 2)]
    return [r for r in rows if r["prompt_id"] in set(harmful) | set(benign)]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _header(cfg: CSTConfig, report: dict, kind: str) -> list[str]:
    title = "CST experiment" if kind == "experiment" else "cst-ray run"
    return [f"# {title}: `{cfg.run_dir}`", "",
            f"Model `{cfg.model.name_or_path}`; judge `{report['judge']}`; {report['held_out_prompts']} held-out prompts "
            f"from `{', '.join(source_names(cfg.data.source))}`. Scores of a "
            f"{score_names(report['judge'], report.get('judge_audit')).sentence()} (s0: the training wording and "
            "wordings never seen in training). Value [Wilson 95% CI] (n).",
            ""]


def _safety_section(report: dict) -> list[str]:
    scores = report["scores"]
    variants = list(next(iter(scores.values())))
    md = ["## Safety", ""] + _table(["model", *variants], [[m, *(_fmt(s[v]) for v in variants)] for m, s in scores.items()])
    if report.get("over_refusal"):
        o = report["over_refusal"]
        md += ["", f"Over-refusal: share of {next(iter(o['scores'].values()))['n']} benign `{o['source']}` questions "
               "refused (refusal patterns) under s1.", ""]
        md += _table(["model", "over-refusal"], [[m, _fmt(s)] for m, s in o["scores"].items()])
    if report.get("unseen_source"):
        u = report["unseen_source"]
        md += ["", f"Unseen source: {u['n']} harmful requests of `{', '.join(u['sources'])}`, a source no training "
               "pair comes from, under s1 and the training s0.", ""]
        md += _table(["model", "S1", "S0"], [[m, _fmt(s["S1"]), _fmt(s["S0"])] for m, s in u["scores"].items()])
    md += extra_tasks_markdown(report)
    if report.get("degenerate_share"):
        dv = sorted({v for d in report["degenerate_share"].values() for v in d})
        md += ["", "Share of degenerate answers (one word >= 30% of the words, < 20% distinct words, a list-number "
               "loop, or no content words); they give no help and are never counted as unsafe:", ""]
        md += _table(["model", *dv], [[m, *(f"{d.get(v, 0):.2f}" for v in dv)] for m, d in report["degenerate_share"].items()])
    if report.get("scores_refusal_judge"):
        md += ["", "The same answers read by the `refusal` pattern judge, for comparison:", ""]
        md += _table(["model", *variants], [[m, *(_fmt(s[v]) for v in variants)]
                                            for m, s in report["scores_refusal_judge"].items()])
    return md + _judge_card(report) + ["", "![S1/S0](figures/safety.png)", "", "System prompts:", ""] + \
        [f"- `{k}`: {v}" for k, v in report["variants"].items()]


def _judge_card(report: dict) -> list[str]:
    md = ["", audit_line(report["judge_audit"])] if report.get("judge_audit") else []
    card = report.get("judge_card") or {}
    if not card.get("heldout"):
        return md
    h, r = card["heldout"], card["heldout_refusal_judge"]
    return md + ["", f"Judge `{report['judge']}` ({card['path']}): held-out accuracy {h['accuracy']:.3f} "
            f"(precision/recall of 'safe' {h['precision_safe']:.2f}/{h['recall_safe']:.2f}, n={h['n']}); the refusal "
            f"judge on the same rows: {r['accuracy']:.3f}."]


def _training_section(curves: dict[str, list[dict]]) -> list[str]:
    if not curves:
        return []
    rows = []
    for m, c in curves.items():
        first, last = c[0], c[-1]
        speed = [r["tokens_per_s"] for r in c if r.get("tokens_per_s")]
        rows.append([m, last["step"], f"{first['loss']:.4f}", f"{last['loss']:.4f}",
                     f"{last.get('rewards/margins', float('nan')):.3f}", f"{last.get('rewards/accuracies', float('nan')):.2f}",
                     f"{sum(speed) / len(speed):.0f}" if speed else "-"])
    return ["", "## Training", "", "![training curves](figures/training.png)", ""] + _table(
        ["method", "steps", "first loss", "final loss", "final reward margin", "final reward accuracy", "tokens/s"], rows)


def _yield_section(run: Path) -> list[str]:
    """What generation kept and why it rejected the rest (generate/stats.json, pairs/stats.json)."""
    gen, pairs = _read_json(run / "generate" / "stats.json"), _read_json(run / "pairs" / "stats.json")
    if not gen and not pairs:
        return []
    md = ["", "## Generation yield", ""]
    if gen:
        n = gen.get("input_rows") or 0
        rows = [["prompts", n, ""], ["kept (y0, critique, y1)", gen.get("rows_out", 0), _share(gen.get("rows_out", 0), n)]]
        rows += [[f"rejected: {reason}", k, _share(k, n)] for reason, k in sorted(gen.get("rejected_by_reason", {}).items())]
        md += [f"Critic: `{gen.get('critic', 'self')}`; {gen.get('generated_tokens_per_s', '-')} generated tok/s.", ""]
        md += _table(["rows", "n", "share"], rows)
    benign = pairs.get("benign") or {}
    if benign.get("answers"):
        rows = [["benign answers", benign["answers"]], ["benign pairs", benign.get("pairs", 0)]]
        rows += [[f"skipped: {reason}", k] for reason, k in sorted((benign.get("skipped") or {}).items())]
        md += ["", "Benign questions answered under s1 (helpful > refusal pairs):", ""] + _table(["rows", "n"], rows)
    if pairs:
        md += ["", f"Pairs: {pairs.get('cst_pairs', '-')} CST, {pairs.get('dpo_pairs', '-')} DPO baseline "
               "(also in TRL's format under `pairs/trl/`)."]
    return md


def _share(k: int, n: int) -> str:
    return f"{k / n:.2f}" if n else "-"


def _capability_section(cfg: CSTConfig, capability: dict) -> list[str]:
    if not capability:
        return []
    tasks = list(next(iter(capability.values())))
    md = ["", "## Capability retention", "",
          f"Log-likelihood multiple choice, {cfg.eval.capability_limit or 'all'} items per task, the same items "
          "for every model. Accuracy [95% CI] (n).", ""]
    md += _table(["model", *tasks], [[m, *(_fmt(c[t]) + (f"; Δ vs base {_fmt_delta(c[t]['delta_vs_base'])}"
                                                          if "delta_vs_base" in c[t] else "") for t in tasks)]
                                     for m, c in capability.items()])
    return md + ["", "Δ vs base: accuracy difference on the same items, paired bootstrap 95% CI."]


def _examples_section(cfg: CSTConfig, run: Path, report: dict) -> list[str]:
    """A few answers under each system prompt, every model's beside the others'."""
    by_variant: dict[str, list[tuple[str, dict]]] = {}
    for m in report["scores"]:
        for r in _examples(run, m, cfg.eval.examples_per_variant):
            by_variant.setdefault(r["variant"], []).append((m, r))
    names = score_names(report["judge"], report.get("judge_audit"))
    md = ["", "## Example answers"]
    order = [v for v in [*report["variants"], BENIGN_VARIANT] if v in by_variant]
    for variant in order + sorted(set(by_variant) - set(order)):
        pairs = by_variant[variant]
        system = report["variants"].get(variant, cfg.prompts.s1 if variant == BENIGN_VARIANT else "")
        md += ["", f"### Under `{variant}`" + (f": {system}" if system else ""), ""]
        for m, r in sorted(pairs, key=lambda x: (x[1]["prompt_id"], x[0])):
            text = " ".join(r["response"].split()) or "(empty answer)"
            verdict = ("refused" if r.get("refusal") else "answered") if r["variant"] == BENIGN_VARIANT else \
                (names.counted if r["safe"] else names.not_counted)
            md += [f"- **{m}**, `{r['variant']}`, {verdict} — *{r['prompt']}*",
                   f"  > {text[:400]}{'…' if len(text) > 400 else ''}"]
    return md


def write_report(cfg: CSTConfig, report: dict, capability: dict | None = None, *, kind: str = "experiment") -> dict:
    """`report.md` and `report.html` (+ figures/) in the run directory; `kind` "run" for
    `cst-ray run`, "experiment" (with the capability table) for `cst-ray experiment`."""
    run = Path(cfg.run_dir)
    figs = run / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    safety_figure(report["scores"], figs / "safety.png", score_names(report["judge"], report.get("judge_audit")))
    curves = {m: read_metrics(run / "train" / m / "metrics.jsonl") for m in cfg.train.methods}
    curves = {m: c for m, c in curves.items() if c}
    if curves:
        training_figure(curves, figs / "training.png")
    md = (_header(cfg, report, kind) + _safety_section(report) + _training_section(curves) + _yield_section(run)
          + _capability_section(cfg, capability or {}) + _examples_section(cfg, run, report))
    md_text = "\n".join(md) + "\n"
    atomic_write_text(run / "report.md", md_text)
    atomic_write_text(run / "report.html", _to_html(md_text, title=md[0].lstrip("# ").replace("`", "")))
    return {"md": str(run / "report.md"), "html": str(run / "report.html")}


def _inline(text: str) -> str:
    """Escaped text with Markdown's inline `code`, **bold** and *italic* as HTML."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<i>\1</i>", out)


def _to_html(md: str, title: str = "CST experiment") -> str:
    """A small Markdown subset (headings, tables, images, lists, quotes) to standalone HTML."""
    out, table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(re.fullmatch(r"-+", c) for c in cells):
                continue
            if not table:
                out.append("<table>")
                table = True
                out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if table:
            out.append("</table>")
            table = False
        if m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line):
            out.append(f'<p><img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}"></p>')
        elif line.startswith("#"):
            n = len(line) - len(line.lstrip("#"))
            out.append(f"<h{n}>{_inline(line[n:].strip())}</h{n}>")
        elif line.startswith("  > "):
            out.append(f"<blockquote>{_inline(line[4:])}</blockquote>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if table:
        out.append("</table>")
    style = "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:4px 8px}blockquote{color:#444;margin:0 0 8px 24px}" \
            "img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 2px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>" \
           f"</head><body>\n" + "\n".join(out) + "\n</body></html>\n"


def policy_heatmap(models: dict, path: Path) -> None:
    """The share refused per (wording, category), one panel per model, base beside tuned; a cell's
    label is that share and what the policy asks there (R = refuse, A = answer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = sorted({c for m in models.values() for cells in m["cells"].values() for c in cells})
    wordings = list(next(iter(models.values()))["cells"])
    fig, axes = plt.subplots(1, len(models), figsize=(min(11.0, 1.2 + 2.6 * len(models) + 0.5 * len(cats)),
                                                      1.2 + 0.45 * len(wordings)), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        grid = np.full((len(wordings), len(cats)), np.nan)
        for i, v in enumerate(wordings):
            for j, c in enumerate(cats):
                cell = m["cells"].get(v, {}).get(c)
                if cell:
                    grid[i, j] = cell["refused"]["value"]
                    ax.text(j, i, f"{grid[i, j]:.2f}\n{cell['behaviour'][0].upper()}", ha="center", va="center",
                            fontsize=6)
        ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(cats)), [c[:14] for c in cats], rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(wordings)), wordings, fontsize=6)
        ax.set_title(f"{name}: share refused", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_policy_report(cfg: CSTConfig, report: dict, summary_md: str) -> dict:
    """report.md / report.html of a `policies` run: the summary's tables, the heat map, training."""
    run = Path(cfg.run_dir)
    figs = run / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    policy_heatmap(report["policies"]["models"], figs / "policies.png")
    curves = {m: read_metrics(run / "train" / m / "metrics.jsonl") for m in cfg.train.methods}
    curves = {m: c for m, c in curves.items() if c}
    if curves:
        training_figure(curves, figs / "training.png")
    md = summary_md.splitlines() + ["", "![policy matrix](figures/policies.png)", ""] + _training_section(curves)
    md_text = "\n".join(md) + "\n"
    atomic_write_text(run / "report.md", md_text)
    atomic_write_text(run / "report.html", _to_html(md_text, title=md[0].lstrip("# ").replace("`", "")))
    return {"md": str(run / "report.md"), "html": str(run / "report.html")}
