"""Preference pairs: CST mirroring, the DPO baseline, and extra configurable tasks.

Schema (TRL-compatible, plus bookkeeping): id, pair_of, system, prompt, chosen, rejected, task.

CST: every generation (x, y0, y1) gives two pairs with flipped preference,
    (s1, x, chosen=y1, rejected=y0) and (s0, x, chosen=y0, rejected=y1).
DPO baseline: only the s1 pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from cst_ray.core.errors import InputDataError
from cst_ray.data.refusals import is_degenerate, is_refusal
from cst_ray.data.sources import SourceStats, check_not_empty, in_eval_split, iter_rows, stable_id

PAIR_FIELDS = ("id", "pair_of", "system", "prompt", "chosen", "rejected", "task")
PAIR_SCHEMA = pa.schema([(f, pa.string()) for f in PAIR_FIELDS])


def mirror_pairs(generations: list[dict], *, s1: str, s0: str, mode: str = "cst") -> list[dict]:
    """Build pairs from generation rows (`id`, `prompt`, `y0`, `y1`).

    mode="cst" -> two pairs per row (s1: y1>y0, s0: y0>y1); mode="dpo" -> the s1 pair only.
    """
    if mode not in ("cst", "dpo"):
        raise ValueError(f"mode must be 'cst' or 'dpo', got {mode!r}")
    out = []
    for g in generations:
        out.append(dict(id=f"{g['id']}:s1", pair_of=g["id"], system=s1, prompt=g["prompt"],
                        chosen=g["y1"], rejected=g["y0"], task="harmless"))
        if mode == "cst":
            out.append(dict(id=f"{g['id']}:s0", pair_of=g["id"], system=s0, prompt=g["prompt"],
                            chosen=g["y0"], rejected=g["y1"], task="harmless"))
    return out


def _pair_row(obj: dict, *, file: str, row: int) -> dict:
    """The four text fields of a pair row; a missing field or a non-string is an error."""
    for fld in ("system", "prompt", "chosen", "rejected"):
        if fld not in obj:
            raise InputDataError("missing field", file=file, row=row, field=fld)
        if not isinstance(obj[fld], str):
            got = "null" if obj[fld] is None else type(obj[fld]).__name__
            raise InputDataError(f"must be a string, got {got}", file=file, row=row, field=fld)
    return {fld: obj[fld] for fld in ("system", "prompt", "chosen", "rejected")}


def _skip_reason(pair: dict, task: str, tasks: tuple[str, ...]) -> str:
    if tasks and task not in tasks:
        return f"task_not_selected:{task}"
    if not pair["prompt"].strip() or not pair["chosen"].strip() or not pair["rejected"].strip():
        return "empty_field"
    if pair["chosen"].strip() == pair["rejected"].strip():
        return "chosen_equals_rejected"
    return ""


def extra_row_heldout(prompt: str, fraction: float, seed: int = 0) -> bool:
    """Whether an extra-task row is held out of training for evaluation
    (`pairs.extra_tasks_eval_fraction`): a hash of its prompt alone, so every row of one prompt
    (the s1 and s0 sides of a mirrored pair, an honest and a persona answer) is on the same side."""
    return in_eval_split(stable_id("extra_tasks", prompt), fraction, seed)


def read_pair_file(path: str, *, limit: int = 0, tasks: tuple[str, ...] = (), heldout_fraction: float = 0.0,
                   seed: int = 0) -> tuple[list[dict], SourceStats]:
    """Read a pair file (JSON/JSONL/Parquet/CSV with system, prompt, chosen, rejected[, task]).

    This reads the author's released CST data set as is. Rows with an empty chosen or
    rejected, or chosen == rejected, are skipped and counted; so are rows of tasks not in
    `tasks` (when given), and the rows held out for evaluation (`extra_row_heldout` with
    `heldout_fraction` and `seed`; 0 = none). `limit` keeps the rows of the first `limit`
    distinct prompts left, so both sides of a mirrored pair (same prompt, s1 and s0) stay
    together. A file that cannot be read, a bad row, and a file that leaves no pair (no rows,
    all skipped) are errors.
    """
    name, file, rows = iter_rows(path, kind="pair file")
    # ids unique across files: two files named alike in different folders must not share ids
    # (the reference log-probs are joined to pairs by id)
    file_tag = f"{Path(name).stem}-{hashlib.sha1(str(Path(file).resolve()).encode()).hexdigest()[:8]}"
    stats = SourceStats()
    out = []
    prompts_kept: set[str] = set()
    for row_no, obj in rows:
        stats.read += 1
        pair = _pair_row(obj, file=file, row=row_no)
        task = str(obj.get("task") or "extra")
        reason = _skip_reason(pair, task, tasks)
        if not reason and heldout_fraction and extra_row_heldout(pair["prompt"], heldout_fraction, seed):
            reason = "held_out_for_eval"
        if not reason and limit and pair["prompt"] not in prompts_kept and len(prompts_kept) >= limit:
            reason = "beyond_prompt_limit"
        if reason:
            stats.skip(reason)
            continue
        prompts_kept.add(pair["prompt"])
        rid = f"{file_tag}:{row_no}"
        out.append(dict(id=rid, pair_of=rid, **pair, task=task))
    stats.kept = len(out)
    check_not_empty(stats, file, "pairs")
    return out, stats


def heldout_pair_rows(path: str, *, fraction: float, tasks: tuple[str, ...] = (), seed: int = 0) -> list[dict]:
    """The rows of a pair file that `read_pair_file(..., heldout_fraction=fraction, seed=seed)`
    holds out of training, with the same ids, in file order (no prompt limit)."""
    rows, _ = read_pair_file(path, tasks=tasks)
    return [r for r in rows if extra_row_heldout(r["prompt"], fraction, seed)]


FALLBACK_REFUSAL = "I'm sorry, but I can't help with that."


def benign_pairs(answers: list[dict], refusals: list[str], *, s1: str, unusable: Callable[[str], str],
                 seed: int = 0) -> tuple[list[dict], dict]:
    """Pairs that keep the model helpful under s1: (s1, benign question, answer > refusal).

    `answers` are the policy's answers (`id`, `prompt`, `response`) to benign questions under
    s1; the rejected side is one of `refusals` (this run's refusing revisions) drawn by a hash
    of the id, or a fixed refusal when there are none. `unusable(text)` names why an answer
    gives no pair ("" = usable: e.g. it is itself a refusal); those are counted by reason.
    """
    refusals = refusals or [FALLBACK_REFUSAL]
    out, skipped = [], {}
    for a in answers:
        text = (a["response"] or "").strip()
        reason = "empty_answer" if not text else unusable(text)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        h = int(hashlib.sha1(f"{seed}:{a['id']}".encode()).hexdigest()[:8], 16)
        out.append(dict(id=a["id"], pair_of=a["id"], system=s1, prompt=a["prompt"], chosen=text,
                        rejected=refusals[h % len(refusals)], task="benign"))
    return out, {"answers": len(answers), "pairs": len(out), "skipped": skipped}


def benign_pairs_for_run(answers: list[dict], generations: list[dict], *, s1: str,
                         seed: int = 0) -> tuple[list[dict], dict]:
    """`benign_pairs` from a run's benign answers, in id order: the rejected side is one of the
    run's refusing revisions (`y1` of `generations`); an answer that is itself a refusal, or
    degenerate, gives no pair."""
    def unusable(text: str) -> str:
        return "answer_is_refusal" if is_refusal(text) else "answer_degenerate" if is_degenerate(text) else ""

    refusals = sorted({g["y1"] for g in generations if is_refusal(g["y1"])})
    return benign_pairs(sorted(answers, key=lambda r: r["id"]), refusals, s1=s1, unusable=unusable, seed=seed)


def augment_s0(pairs: list[dict], *, s0: str, wordings: list[str], seed: int = 0) -> tuple[list[dict], dict]:
    """Give each harmless pair under `s0` a wording drawn from [s0] + `wordings` by a hash of
    its id (stable across runs). -> (pairs, {wording: count})."""
    choices = [s0] + [w for w in wordings if w != s0]
    counts = {w: 0 for w in choices}
    out = []
    for p in pairs:
        if wordings and p.get("task") == "harmless" and p["system"] == s0:
            h = int(hashlib.sha1(f"{seed}:{p['id']}".encode()).hexdigest()[:8], 16)
            p = dict(p, system=choices[h % len(choices)])
            counts[p["system"]] += 1
        out.append(p)
    return out, counts


def to_table(pairs: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{k: p[k] for k in PAIR_FIELDS} for p in pairs], schema=PAIR_SCHEMA)


MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
TRL_SCHEMA = pa.schema([("prompt", pa.list_(MESSAGE_TYPE)), ("chosen", pa.list_(MESSAGE_TYPE)),
                        ("rejected", pa.list_(MESSAGE_TYPE))])


def to_trl_table(pairs: pa.Table) -> pa.Table:
    """A pairs table (PAIR_FIELDS) in TRL's conversational preference format, row for row:
    `prompt` = [system turn, user turn], `chosen` / `rejected` = [assistant turn]. The system
    turn carries the pair's system prompt, which is what makes the preference flip in CST."""
    cols = {c: pairs.column(c).to_pylist() for c in ("system", "prompt", "chosen", "rejected")}

    def turn(role: str, texts: list[str]) -> list[dict]:
        return [{"role": role, "content": t} for t in texts]

    prompts = [[s, u] for s, u in zip(turn("system", cols["system"]), turn("user", cols["prompt"]))]
    return pa.Table.from_arrays(
        [pa.array(prompts, pa.list_(MESSAGE_TYPE)),
         pa.array([[m] for m in turn("assistant", cols["chosen"])], pa.list_(MESSAGE_TYPE)),
         pa.array([[m] for m in turn("assistant", cols["rejected"])], pa.list_(MESSAGE_TYPE))],
        schema=TRL_SCHEMA)
