"""Merge one blind audit batch and rebuild what depends on it.

    python scripts/audit_batch.py results/audit_2026-12-07 [--check]

The batch folder holds what the labellers were given and what they wrote:
  candidates_blind.jsonl  cid, prompt, response: all a labeller saw
  candidates_key.jsonl    cid, batch, model, variant (and n for rows of results/judge_audit.jsonl)
  labels_A.jsonl, labels_B.jsonl   cid, label_safe, note, annotator: two labellers, independently
  adjudication.jsonl      cid, label_safe, note, annotator: one label for each row A and B differ on

It writes labels.jsonl (the merged label of each cid and who made it), relabels the rows of
results/judge_audit.jsonl that the batch names by `n` (keeping the label they had under the
first rule as `label_safe_first_rule`), and writes harm_vs_refusal.md: for each model and system
prompt of the run named in `run.txt`, S1 / S0 by the run's judge and by the labels, side by side.
With --check it only verifies that the committed files are what this script writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cst_ray.evaluation.metrics import binary_metrics, wilson_interval  # noqa: E402


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def merged_labels(folder: Path, field: str = "label_safe") -> tuple[list[dict], dict]:
    """One label per cid: A's where A and B agree (`<A>+B`), else the adjudicator's
    (`<A>+B+adjudicator`); and A and B's agreement. `field`: the label's name (`label_safe` for
    harm, `label_refusal` for `scripts/refusal_audit.py`)."""
    a, b = ({r["cid"]: r for r in read(folder / f"labels_{x}.jsonl")} for x in "AB")
    adj = {r["cid"]: r for r in read(folder / "adjudication.jsonl")}
    cids = sorted(r["cid"] for r in read(folder / "candidates_key.jsonl"))
    for name, got in (("labels_A", a), ("labels_B", b)):
        if sorted(got) != cids:
            raise SystemExit(f"{folder / name}.jsonl: labels for {len(got)} cids, the batch has {len(cids)}")
    differ = [c for c in cids if a[c][field] != b[c][field]]
    if missing := [c for c in differ if c not in adj]:
        raise SystemExit(f"{folder / 'adjudication.jsonl'}: no label for cids {missing} (A and B differ)")
    pair = a[cids[0]]["annotator"].replace("#A-", "#A+B-")  # llm:claude#A-<date> -> llm:claude#A+B-<date>
    settled = pair.replace("#A+B-", "#A+B+adjudicator-")  # the adjudicator's name is in adjudication.jsonl
    out = [{"cid": c, field: a[c][field], "annotator": pair} if c not in differ else
           {"cid": c, field: adj[c][field], "annotator": settled} for c in cids]
    m = binary_metrics([bool(a[c][field]) for c in cids], [bool(b[c][field]) for c in cids], 3)
    return out, {"rows": len(cids), "differ": len(differ), "agreement": m["accuracy"], "kappa": m["kappa"]}


def relabelled_audit(key: list[dict], labels: dict[int, dict]) -> list[dict]:
    """results/judge_audit.jsonl with the batch's rows (by n) under their new label."""
    new = {k["n"]: labels[k["cid"]] for k in key if "n" in k}
    rows = []
    for r in read(ROOT / "results" / "judge_audit.jsonl"):
        if r["n"] in new:
            first = r.get("label_safe_first_rule", r["label_safe"])
            r = {**r, "label_safe": new[r["n"]]["label_safe"], "annotator": new[r["n"]]["annotator"],
                 "label_safe_first_rule": first}
        rows.append(r)
    return rows


def _share(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.2f} ({k}/{n}) [{lo:.2f}, {hi:.2f}]"


def harm_vs_refusal(key: list[dict], labels: dict[int, dict], run: Path) -> str:
    """Markdown: per model and variant, the judge's score and the labels' score."""
    verdict = {}
    for f in run.glob("labelled_*.jsonl"):
        model = f.stem.removeprefix("labelled_")
        verdict.update({(model, r["variant"], r["prompt"]): r["safe"] for r in read(f)})
    cells = defaultdict(lambda: [0, 0, 0])  # n, judge counted, labels counted
    for k in (k for k in key if "n" not in k):
        model = k["model"].rsplit("/", 1)[-1]
        judge_safe, label_safe = verdict[(model, k["variant"], k["prompt"])], bool(labels[k["cid"]]["label_safe"])
        # S1 counts safe answers under s1, S0 counts the others under s0 (unseen_source:s1 is s1)
        s1 = k["variant"].rsplit(":", 1)[-1] == "s1"
        c = cells[(model, k["variant"])]
        c[0] += 1
        c[1] += judge_safe if s1 else not judge_safe
        c[2] += label_safe if s1 else not label_safe
    lines = ["| model | system prompt | score | by the refusal judge (refused / answered) | by the labels (harm) |",
             "|---|---|---|---|---|"]
    for (model, variant), (n, j, h) in sorted(cells.items()):
        score = "S1 (safe under s1)" if variant.rsplit(":", 1)[-1] == "s1" else f"S0 (not safe under {variant})"
        lines.append(f"| {model} | {variant} | {score} | {_share(j, n)} | {_share(h, n)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    folder = args.folder
    key = read(folder / "candidates_key.jsonl")
    labels, agree = merged_labels(folder)
    by_cid = {r["cid"]: r for r in labels}
    outputs = {
        folder / "labels.jsonl": "".join(json.dumps(r) + "\n" for r in labels),
        ROOT / "results" / "judge_audit.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                         for r in relabelled_audit(key, by_cid)),
        folder / "harm_vs_refusal.md": harm_vs_refusal(key, by_cid, ROOT / (folder / "run.txt").read_text().strip()),
        folder / "agreement.json": json.dumps(agree, indent=2) + "\n",
    }
    stale = [str(p) for p, text in outputs.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        raise SystemExit(f"not rebuilt from the batch: {', '.join(stale)}" if stale else 0)
    for p, text in outputs.items():
        p.write_text(text)
    print(json.dumps(agree), "\n" + outputs[folder / "harm_vs_refusal.md"])


if __name__ == "__main__":
    main()
