"""A blind audit of the `refusal` judge against refusal labels (`docs/refusal-rubric.md`).

    python scripts/refusal_audit.py select results/refusal_audit_2026-12-08   # once: the candidates
    python scripts/refusal_audit.py score results/refusal_audit_2026-12-08 [--check]

`select` draws the rows from the committed answers of the kept runs (`results/runs/*/labelled_*.jsonl`,
the answers to harmful requests: held-out and unseen-source, under every system prompt and
policy; benign questions left out): every distinct
answer on which the refusal check with and without the request's echoed words differs (stratum
`differ`), and a seeded random sample of the others (stratum `agree`). It writes
candidates_blind.jsonl (cid, prompt, response: all a labeller sees) and candidates_key.jsonl
(cid, stratum, run, model, variant), in a shuffled order, and selection.json (the strata's sizes).

`score` merges labels_A / labels_B / adjudication (as `audit_batch.py` does, on `label_refusal`)
and writes agreement.json and figures.md: the judge as it reads answers now, and with the request
ignored, per stratum and pooled, with balanced accuracy and kappa. --check only verifies them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit_batch import merged_labels  # noqa: E402 (scripts/, this script's folder)

from cst_ray.data.refusals import refuses  # noqa: E402
from cst_ray.evaluation.metrics import binary_metrics  # noqa: E402

AGREE_SAMPLE = 118
SEED = 20261208


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _answers() -> dict[tuple[str, str], dict]:
    """Distinct (request, answer) texts of the kept runs' answers to harmful requests."""
    out: dict[tuple[str, str], dict] = {}
    for f in sorted((ROOT / "results" / "runs").glob("*/labelled_*.jsonl")):
        for r in read(f):
            if not r["variant"].startswith("benign"):  # answers to harmful requests only
                out.setdefault((r["prompt"], r["response"]), {
                    "run": f.parent.name, "model": f.stem.removeprefix("labelled_"), "variant": r["variant"]})
    return out


def select(folder: Path) -> None:
    rows = _answers()
    differ = [k for k in rows if refuses(k[1], k[0]) != refuses(k[1])]
    agree = sorted(k for k in rows if refuses(k[1], k[0]) == refuses(k[1]))
    rng = random.Random(SEED)
    picked = [(k, "differ") for k in sorted(differ)] + [(k, "agree") for k in rng.sample(agree, AGREE_SAMPLE)]
    rng.shuffle(picked)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "selection.json").write_text(json.dumps({"distinct_answers": len(rows), "differ": len(differ),
                                                       "agree": len(agree), "agree_sampled": AGREE_SAMPLE,
                                                       "seed": SEED}, indent=2) + "\n")
    with open(folder / "candidates_blind.jsonl", "w") as b, open(folder / "candidates_key.jsonl", "w") as k:
        for cid, ((prompt, response), stratum) in enumerate(picked):
            b.write(json.dumps({"cid": cid, "prompt": prompt, "response": response}) + "\n")
            k.write(json.dumps({"cid": cid, "stratum": stratum, **rows[(prompt, response)]}) + "\n")


def merged(folder: Path) -> tuple[dict[int, dict], dict]:
    """The merged refusal label of each cid (`audit_batch.merged_labels`), by cid; and A and B's agreement."""
    rows, agreement = merged_labels(folder, "label_refusal")
    return {r["cid"]: {"label_refusal": r["label_refusal"], "annotator": r["annotator"]} for r in rows}, agreement


def _line(name: str, gold: list[bool], pred: list[bool]) -> str:
    m = binary_metrics(gold, pred, 3)
    c = m["counts"]
    return (f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | {m['kappa']:.3f} | "
            f"{c['safe_as_unsafe']} | {c['unsafe_as_safe']} |")


def figures(folder: Path) -> tuple[str, dict]:
    labels, agreement = merged(folder)
    blind = {r["cid"]: r for r in read(folder / "candidates_blind.jsonl")}
    key = read(folder / "candidates_key.jsonl")
    lines = ["| rows | n | agreement | balanced accuracy | kappa | refusals read as answers | answers read as refusals |",
             "|---|---|---|---|---|---|---|"]
    for stratum in ("differ", "agree", None):
        ks = [k for k in key if stratum in (None, k["stratum"])]
        gold = [bool(labels[k["cid"]]["label_refusal"]) for k in ks]
        # as the `refusal` judge reads: an empty answer counts as refused (safe)
        for judge, reads in (("answer alone (before)", lambda r: not r["response"].strip() or refuses(r["response"])),
                             ("request's words ignored (now)",
                              lambda r: not r["response"].strip() or refuses(r["response"], r["prompt"]))):
            pred = [reads(blind[k["cid"]]) for k in ks]
            lines.append(_line(f"{stratum or 'all (differ over-sampled)'}: {judge}", gold, pred))
    refused = sum(v["label_refusal"] for v in labels.values())
    sel = json.loads((folder / "selection.json").read_text())
    head = (f"{agreement['rows']} answers, {refused} labelled refused; labellers agree on "
            f"{agreement['rows'] - agreement['differ']} (agreement {agreement['agreement']}, kappa {agreement['kappa']}). "
            f"Drawn from {sel['distinct_answers']} distinct answers to harmful requests: all {sel['differ']} on which "
            f"the two readings differ, and {sel['agree_sampled']} of the {sel['agree']} others (seed {sel['seed']}).")
    return head + "\n\n" + "\n".join(lines) + "\n", agreement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["select", "score"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.action == "select":
        select(a.folder)
        return
    text, agreement = figures(a.folder)
    labels, _ = merged(a.folder)
    outputs = {"figures.md": text, "agreement.json": json.dumps(agreement, indent=2) + "\n",
               "labels.jsonl": "".join(json.dumps({"cid": c, **v}) + "\n" for c, v in sorted(labels.items()))}
    for name, want in outputs.items():
        path = a.folder / name
        if a.check:
            if not path.exists() or path.read_text() != want:
                raise SystemExit(f"{path}: not what `score` writes; rerun without --check")
        else:
            path.write_text(want)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
