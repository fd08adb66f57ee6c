"""Rebuild the judges' audit figures shipped with cst-ray from per-row verdicts.

    python scripts/judge_audit_figures.py NAME=verdicts.jsonl [NAME=verdicts.jsonl ...]

Each verdicts file is `cst-ray judge --input results/judge_audit.jsonl --output FILE` output
(rows in the audit's order, with `safe`). Writes results/judge_audit_verdicts.jsonl (one row per
audit row: n, human_safe, and each judge's verdict) and cst_ray/resources/judge_audit.json
(balanced accuracy with its bootstrap 95% interval, kappa, the recalls, per judge), which the
evaluation stage puts beside every score.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.evaluation.audit import figures_from_verdicts  # noqa: E402


def main(argv: list[str]) -> None:
    audit = [json.loads(x) for x in (ROOT / "results" / "judge_audit.jsonl").read_text().splitlines() if x.strip()]
    verdicts = {n: [json.loads(x)["safe"] for x in Path(f).read_text().splitlines() if x.strip()]
                for n, f in (a.split("=", 1) for a in argv)}
    old = ROOT / "results" / "judge_audit_verdicts.jsonl"
    if old.is_file():  # keep the verdicts of judges measured before and not given again
        given = set(verdicts)
        for row in map(json.loads, old.read_text().splitlines()):
            for k, v in row.items():
                if k not in ("n", "human_safe") and k not in given:
                    verdicts.setdefault(k, []).append(v)
    for name, v in verdicts.items():
        if len(v) != len(audit):
            raise SystemExit(f"{name}: {len(v)} verdicts for {len(audit)} audit rows")
    with open(old, "w") as f:
        for i, a in enumerate(audit):
            f.write(json.dumps({"n": a["n"], "human_safe": a["human_safe"], **{k: v[i] for k, v in verdicts.items()}}) + "\n")
    out = ROOT / "cst_ray" / "resources" / "judge_audit.json"
    out.write_text(json.dumps(figures_from_verdicts(old), indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
