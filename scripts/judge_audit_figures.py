"""Rebuild the judges' audit figures shipped with cst-ray from per-row verdicts.

    python scripts/judge_audit_figures.py NAME=verdicts.jsonl [NAME=verdicts.jsonl ...]
    python scripts/judge_audit_figures.py --table    # RESULTS.md's table, pooled and per annotator

Each verdicts file is `cst-ray judge --input results/judge_audit.jsonl --output FILE` output
(rows in the audit's order, with `safe`). Writes results/judge_audit_verdicts.jsonl (one row per
audit row: n, label_safe, annotator, and each judge's verdict) and cst_ray/resources/judge_audit.json
(balanced accuracy with its bootstrap 95% interval, kappa, the recalls, per judge, pooled and
per annotator), which the
evaluation stage puts beside every score.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.evaluation.audit import LABEL_FIELDS, figures_from_verdicts  # noqa: E402


def _cell(f: dict) -> str:
    if "balanced_accuracy" not in f:
        return f"agreement {f['agreement']:.3f} (one class only)"
    lo, hi = f["balanced_accuracy_ci95"]
    return f"{f['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}], kappa {f['kappa']:.3f}"


def table(figures: dict) -> str:
    """Markdown: each judge's balanced accuracy and kappa, pooled and for each annotator's rows."""
    groups = [("all rows (pooled)", figures)] + list(figures["by_annotator"].items())
    judges = list(figures["judges"])
    lines = ["| labels | rows | unsafe | " + " | ".join(f"`{j}`" for j in judges) + " |",
             "|---|---|---|" + "---|" * len(judges)]
    lines += [f"| {name} | {g['rows']} | {g['unsafe']} | " + " | ".join(_cell(g["judges"][j]) for j in judges) + " |"
              for name, g in groups]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if argv == ["--table"]:
        print(table(json.loads((ROOT / "cst_ray" / "resources" / "judge_audit.json").read_text())), end="")
        return
    audit = [json.loads(x) for x in (ROOT / "results" / "judge_audit.jsonl").read_text().splitlines() if x.strip()]
    verdicts = {n: [json.loads(x)["safe"] for x in Path(f).read_text().splitlines() if x.strip()]
                for n, f in (a.split("=", 1) for a in argv)}
    old = ROOT / "results" / "judge_audit_verdicts.jsonl"
    if old.is_file():  # keep the verdicts of judges measured before and not given again
        given = set(verdicts)
        for row in map(json.loads, old.read_text().splitlines()):
            for k, v in row.items():
                if k not in LABEL_FIELDS and k not in given:
                    verdicts.setdefault(k, []).append(v)
    for name, v in verdicts.items():
        if len(v) != len(audit):
            raise SystemExit(f"{name}: {len(v)} verdicts for {len(audit)} audit rows")
    with open(old, "w") as f:
        for i, a in enumerate(audit):
            labels = {k: a[k] for k in LABEL_FIELDS}
            f.write(json.dumps({**labels, **{k: v[i] for k, v in verdicts.items()}}) + "\n")
    out = ROOT / "cst_ray" / "resources" / "judge_audit.json"
    out.write_text(json.dumps(figures_from_verdicts(old), indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
