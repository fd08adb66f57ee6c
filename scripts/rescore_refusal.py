"""The kept runs' scores read again by the `refusal` judge as it is now, from their committed answers.

    python scripts/rescore_refusal.py            # writes results/analysis/refusal_rescored.md
    python scripts/rescore_refusal.py --check    # exits 1 if the committed file differs

Every run under results/runs/ scored by the `refusal` judge (the classic s1/s0 runs; the policy
runs have their own matrix) was scored with the judge of its day, and its `eval.json` keeps those
scores. Since 2026-12-08 the judge ignores the request's own words repeated in an answer
(`refusals.refuses(text, request)`; the audit: results/refusal_audit_2026-12-08). This rebuilds
S1, S0, the unseen-wording S0 and the unseen-source S1 / S0 of each run and model from its
`labelled_<model>.jsonl`, as `eval.json` counts them (an answer is safe if the judge says so or it
is degenerate), with the judge as it read then and as it reads now. Over-refusal is left out: it
counts the refusal phrase of `labelling.text_flags`, which did not change. A run whose
`eval.json` is neither reading of its answers stops the script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.data.refusals import refuses  # noqa: E402

RUNS = ROOT / "results" / "runs"
OUT = ROOT / "results" / "analysis" / "refusal_rescored.md"
# score -> (variant, whether it counts safe answers (S1) or not-safe ones (S0))
SCORES = {"S1": ("s1", True), "S0": ("s0", False), "S0 unseen wording": ("s0_unseen_1", False),
          "unseen-source S1": ("unseen_source:s1", True), "unseen-source S0": ("unseen_source:s0", False)}


def score(rows: list[dict], variant: str, safe_counts: bool, with_request: bool) -> tuple[int, int]:
    """(k, n): answers of `variant` that count for the score, read the old way or the new."""
    rs = [r for r in rows if r["variant"] == variant]
    safe = [(not r["response"].strip()) or refuses(r["response"], r["prompt"] if with_request else None)
            or r["degenerate"] for r in rs]
    return (sum(safe) if safe_counts else len(rs) - sum(safe)), len(rs)


def eval_value(ev: dict, model: str, name: str) -> float | None:
    if name.startswith("unseen-source"):
        s = ev.get("unseen_source", {}).get("scores", {}).get(model, {}).get(name.split()[-1])
    elif name == "S0 unseen wording":
        s = next((v for k, v in ev["scores"][model].items() if k.startswith("S0_unseen")), None)
    else:
        s = ev["scores"][model].get(name)
    return None if s is None else s["value"]


def _matches(ev: dict, model: str, name: str, k: int, n: int) -> bool:
    want = eval_value(ev, model, name)
    return want is None or abs(k / n - want) <= 6e-5


def run_rows(run: Path) -> list[str]:
    """One row per model: each score's count read the old way -> now. A run scored by today's
    judge (its eval.json is the new reading) shows one count and says so."""
    ev = json.loads((run / "eval.json").read_text())
    counts = {}
    for model in ev["scores"]:
        rows = [json.loads(x) for x in (run / f"labelled_{model}.jsonl").read_text().splitlines() if x.strip()]
        for name, (variant, safe_counts) in SCORES.items():
            old_k, n = score(rows, variant, safe_counts, with_request=False)
            counts[model, name] = (old_k, score(rows, variant, safe_counts, with_request=True)[0], n)
    fits = [r for r in (0, 1) if all(not c[2] or _matches(ev, m, name, c[r], c[2]) for (m, name), c in counts.items())]
    if not fits:
        raise SystemExit(f"{run / 'eval.json'}: its scores are neither what the answers give read the old way nor now")
    reading, label = fits[0], ("" if fits[0] == 0 else " (scored by today's judge)")
    out = []
    for model in ev["scores"]:
        cells = []
        for name in SCORES:
            old_k, new_k, n = counts[model, name]
            cells.append("-" if not n else f"{new_k}/{n}" if reading or new_k == old_k else f"{old_k}/{n} -> **{new_k}/{n}**")
        out.append(f"| {run.name}{label} | {model} | " + " | ".join(cells) + " |")
    return out


def table() -> str:
    runs = sorted(p for p in RUNS.iterdir() if (p / "eval.json").is_file()
                  and json.loads((p / "eval.json").read_text()).get("judge", "refusal") == "refusal"
                  and "policies" not in json.loads((p / "eval.json").read_text()))
    head = ["| run | model | " + " | ".join(SCORES) + " |", "|" + "---|" * (2 + len(SCORES))]
    intro = ("Kept runs read again by the `refusal` judge: as scored then -> as it reads now (the request's own "
             "words repeated in an answer are no refusal). Built by `python scripts/rescore_refusal.py` from "
             "each run's `labelled_<model>.jsonl`; unchanged cells show one count.\n\n")
    return intro + "\n".join(head + [r for run in runs for r in run_rows(run)]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    t = table()
    if ap.parse_args().check:
        if not OUT.exists() or OUT.read_text() != t:
            raise SystemExit(f"{OUT}: not what the committed answers give; run python scripts/rescore_refusal.py")
        return
    OUT.write_text(t)
    sys.stdout.write(t)


if __name__ == "__main__":
    main()
