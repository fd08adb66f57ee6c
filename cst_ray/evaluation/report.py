"""The experiment report: `report.md` and `report.html` with PNG figures (matplotlib, Agg).

Contents: S0/S1 per model with 95% intervals (table and bar chart), training curves (loss,
reward margin, reward accuracy per step for each method), the capability table, and a few
example answers per model and system prompt with the judge's label.
"""

from __future__ import annotations

import html
from pathlib import Path

import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.stats import read_metrics
from cst_ray.evaluation.variants import BENIGN_VARIANT


def _fmt(s: dict) -> str:
    return f"{s['value']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] (n={s['n']})"


def safety_figure(scores: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(scores)
    variants = list(next(iter(scores.values())))
    x = np.arange(len(models))
    w = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(models), 3.6))
    for k, v in enumerate(variants):
        vals = [scores[m][v]["value"] for m in models]
        lo = [vals[i] - scores[m][v]["ci95"][0] for i, m in enumerate(models)]
        hi = [scores[m][v]["ci95"][1] - vals[i] for i, m in enumerate(models)]
        label = "S1 (safe under s1)" if v == "s1" else f"S0 (not safe under {v})"
        ax.bar(x + (k - (len(variants) - 1) / 2) * w, vals, w, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks(x, models)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("S1 / S0 per model (Wilson 95% CI)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    fig.savefig(path, dpi=110)
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


def write_report(cfg: CSTConfig, report: dict, capability: dict) -> dict:
    run = Path(cfg.run_dir)
    figs = run / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    scores = report["scores"]
    safety_figure(scores, figs / "safety.png")
    curves = {m: read_metrics(run / "train" / m / "metrics.jsonl") for m in cfg.train.methods}
    curves = {m: c for m, c in curves.items() if c}
    if curves:
        training_figure(curves, figs / "training.png")
    variants = list(next(iter(scores.values())))

    md = [f"# CST experiment: `{cfg.run_dir}`", "",
          f"Model `{cfg.model.name_or_path}`; judge `{report['judge']}`; {report['held_out_prompts']} held-out prompts "
          f"from `{cfg.data.source}`. S1 = share judged safe under s1; S0 = share judged not safe under an "
          "uncensored prompt (the training wording and wordings never seen in training). Value [Wilson 95% CI] (n).",
          "", "## Safety", "", "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    md += [f"| {m} | " + " | ".join(_fmt(s[v]) for v in variants) + " |" for m, s in scores.items()]
    if report.get("over_refusal"):
        o = report["over_refusal"]
        md += ["", f"Over-refusal: share of {next(iter(o['scores'].values()))['n']} benign `{o['source']}` questions "
               "refused (refusal patterns) under s1.", "", "| model | over-refusal |", "|---|---|"]
        md += [f"| {m} | {_fmt(s)} |" for m, s in o["scores"].items()]
    if report.get("degenerate_share"):
        dv = sorted({v for d in report["degenerate_share"].values() for v in d})
        md += ["", "Share of degenerate answers (one word >= 30% of the words, or < 20% distinct words); they give "
               "no help and are never counted as unsafe:", "",
               "| model | " + " | ".join(dv) + " |", "|---|" + "---|" * len(dv)]
        md += [f"| {m} | " + " | ".join(f"{d.get(v, 0):.2f}" for v in dv) + " |" for m, d in report["degenerate_share"].items()]
    if report.get("scores_refusal_judge"):
        md += ["", "The same answers read by the `refusal` pattern judge, for comparison:", "",
               "| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        md += [f"| {m} | " + " | ".join(_fmt(s[v]) for v in variants) + " |"
               for m, s in report["scores_refusal_judge"].items()]
    if report.get("judge_card") and report["judge_card"].get("heldout"):
        h, r = report["judge_card"]["heldout"], report["judge_card"]["heldout_refusal_judge"]
        md += ["", f"Judge `{report['judge']}` ({report['judge_card']['path']}): held-out accuracy {h['accuracy']:.3f} "
               f"(precision/recall of 'safe' {h['precision_safe']:.2f}/{h['recall_safe']:.2f}, n={h['n']}); the refusal "
               f"judge on the same rows: {r['accuracy']:.3f}."]
    md += ["", "![S1/S0](figures/safety.png)", "", "System prompts:", ""]
    md += [f"- `{k}`: {v}" for k, v in report["variants"].items()]
    if curves:
        md += ["", "## Training", "", "![training curves](figures/training.png)", "",
               "| method | steps | final loss | final reward margin | final reward accuracy |", "|---|---|---|---|---|"]
        for m, c in curves.items():
            last = c[-1]
            md.append(f"| {m} | {last['step']} | {last['loss']:.4f} | {last.get('rewards/margins', float('nan')):.3f} | "
                      f"{last.get('rewards/accuracies', float('nan')):.2f} |")
    if capability:
        tasks = list(next(iter(capability.values())))
        md += ["", "## Capability retention", "",
               f"Log-likelihood multiple choice, {cfg.eval.capability_limit or 'all'} items per task, the same items "
               "for every model. Accuracy [95% CI] (n).", "",
               "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        md += [f"| {m} | " + " | ".join(_fmt(c[t]) + (f"; Δ vs base {_fmt_delta(c[t]['delta_vs_base'])}"
                                                   if "delta_vs_base" in c[t] else "") for t in tasks) + " |"
               for m, c in capability.items()]
        md += ["", "Δ vs base: accuracy difference on the same items, paired bootstrap 95% CI."]
    md += ["", "## Example answers", ""]
    for m in scores:
        for r in _examples(run, m, cfg.eval.examples_per_variant):
            text = r["response"].strip().replace("\n", " ")
            verdict = ("refused" if r.get("refusal") else "answered") if r["variant"] == BENIGN_VARIANT else \
                ("judged safe" if r["safe"] else "judged unsafe")
            md += [f"- **{m}**, `{r['variant']}`, {verdict} — *{r['prompt']}*",
                   f"  > {text[:400]}{'…' if len(text) > 400 else ''}"]
    md_text = "\n".join(md) + "\n"
    (run / "report.md").write_text(md_text)
    (run / "report.html").write_text(_to_html(md_text))
    return {"md": str(run / "report.md"), "html": str(run / "report.html")}


def _to_html(md: str) -> str:
    """A small Markdown subset (headings, tables, images, lists, quotes) to standalone HTML."""
    import re

    out, table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(re.fullmatch(r"-+", c) for c in cells):
                continue
            if not table:
                out.append("<table>")
                table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if table:
            out.append("</table>")
            table = False
        if m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line):
            out.append(f'<p><img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}"></p>')
        elif line.startswith("#"):
            n = len(line) - len(line.lstrip("#"))
            out.append(f"<h{n}>{html.escape(line[n:].strip())}</h{n}>")
        elif line.startswith("  > "):
            out.append(f"<blockquote>{html.escape(line[4:])}</blockquote>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if table:
        out.append("</table>")
    style = "body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:4px 8px}blockquote{color:#444;margin:0 0 8px 24px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>CST experiment</title><style>{style}</style>" \
           f"</head><body>\n" + "\n".join(out) + "\n</body></html>\n"
