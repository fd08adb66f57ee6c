"""The table of committed main-job runs in RESULTS.md, rebuilt from their artifacts.

    python scripts/runs_table.py            # prints the markdown table
    python scripts/runs_table.py --check    # exits 1 if RESULTS.md's table differs from it

Each folder under results/runs/ holds what a run wrote that backs its figures, and no weights:
`eval.json` (scores with Wilson intervals and n), `labelled_<model>.jsonl` (every answer with the
judge's verdict), `summary.md`, `run.json` (machine, precision, seed, wall times). One row per
run and model (base, cst): S1, S0 and unseen-wording S0 on the held-out split, over-refusal,
and S1, S0 on the unseen source, each as share (k/n) [Wilson 95% CI].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "runs"
BEGIN, END = "<!-- runs_table: begin -->", "<!-- runs_table: end -->"


def cell(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['value']:.2f} ({round(s['value'] * s['n'])}/{s['n']}) [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def rows(run: Path) -> list[str]:
    ev = json.loads((run / "eval.json").read_text())
    meta = json.loads((run / "run.json").read_text())
    unseen = ev.get("unseen_source", {}).get("scores", {})
    over = ev.get("over_refusal", {}).get("scores", {})
    out = []
    for model, sc in ev["scores"].items():
        s0u = next((v for k, v in sc.items() if k.startswith("S0_unseen")), None)
        src = meta["sources"] if isinstance(meta["sources"], list) else [meta["sources"]]
        names = ", ".join(x if isinstance(x, str) else x["name"] for x in src)
        out.append(f"| {run.name} | {meta['cpu']} | {meta['precision']} | {meta['seed']} | {names} | {model} | "
                   f"{cell(sc.get('S1'))} | "
                   f"{cell(sc.get('S0'))} | {cell(s0u)} | {cell(over.get(model))} | "
                   f"{cell(unseen.get(model, {}).get('S1'))} | {cell(unseen.get(model, {}).get('S0'))} |")
    return out


def table() -> str:
    head = ["| run | CPU | precision | seed | training sources | model | S1 | S0 | S0 unseen wording | over-refusal | "
            "unseen-source S1 | unseen-source S0 |", "|" + "---|" * 12]
    body = [r for run in sorted(p for p in RUNS.iterdir() if (p / "eval.json").is_file()
                                and "policies" not in json.loads((p / "eval.json").read_text())) for r in rows(run)]
    return "\n".join(head + body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare with the table in RESULTS.md")
    args = ap.parse_args()
    t = table()
    if not args.check:
        print(t)
        return
    text = (ROOT / "RESULTS.md").read_text()
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in text else ""
    if shown != t:
        sys.exit("RESULTS.md's runs table differs from results/runs/: run `python scripts/runs_table.py` and paste it")
    print("RESULTS.md's runs table matches results/runs/")


if __name__ == "__main__":
    main()
