"""The evaluation set: held-out prompts under every variant, the unseen source's prompts under
s1 and s0, and the benign questions under s1, each in a seeded order that is the same for every model."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.data.policies import policy_wordings
from cst_ray.data.sources import interleave, read_prompts, source_category
from cst_ray.evaluation.variants import BENIGN_VARIANT, eval_variants

log = logging.getLogger(__name__)


def seeded_order(table: pa.Table, seed: int) -> pa.Table:
    """`table`'s rows in a fixed order by the hash of (seed, id): the same subset for every model."""
    ids = table.column("id").to_pylist()
    return table.take(sorted(range(len(ids)), key=lambda i: hashlib.sha1(f"{seed}:{ids[i]}".encode()).hexdigest()))


def _norm_prompt(text: str) -> str:
    return " ".join(text.lower().split())


def pair_file_prompts(files: list[Path]) -> list[str]:
    """The prompts of the pair tables among `files` that exist: the run's training prompts (extra
    pair files can hold the same prompts as `data.source`, e.g. the author's set is built on AdvBench)."""
    return [p for f in files if f.is_file() for p in pq.read_table(f, columns=["prompt"]).column("prompt").to_pylist()]


def without_prompts(rows: list[dict], prompts: list[str]) -> tuple[list[dict], int]:
    """`rows` minus those whose prompt is one of `prompts` (case and spacing aside): held-out rows
    that a training pair uses are never evaluated. -> (kept, dropped)."""
    seen = {_norm_prompt(p) for p in prompts}
    kept = [r for r in rows if _norm_prompt(r["prompt"]) not in seen]
    if len(kept) < len(rows):
        log.info(f"evaluate: {len(rows) - len(kept)} held-out prompts dropped: they are training prompts of the pairs")
    return kept, len(rows) - len(kept)


def benign_prompts(cfg: CSTConfig) -> list[dict]:
    """A fixed, seeded subset of `eval.benign_source`."""
    if not cfg.eval.benign_limit:
        return []
    return seeded_order(read_prompts(cfg.eval.benign_source)[0], cfg.data.seed).slice(0, cfg.eval.benign_limit).to_pylist()


UNSEEN = "unseen_source:"  # variant prefix of the unseen-source rows: unseen_source:s1, unseen_source:s0


def unseen_prompts(cfg: CSTConfig) -> list[dict]:
    """`eval.unseen_limit` prompts of `eval.unseen_sources`, taken in turn from each source in a
    seeded order by id hash (the same for every model)."""
    if not cfg.eval.unseen_sources:
        return []
    tables = [seeded_order(read_prompts(source)[0], cfg.data.seed) for source in cfg.eval.unseen_sources]
    return interleave(tables).slice(0, cfg.eval.unseen_limit).to_pylist()


def eval_table(cfg: CSTConfig, held: list[dict], benign: list[dict], unseen: list[dict] = ()) -> pa.Table:
    """One row per (held-out prompt, variant), plus the benign questions under s1."""
    if cfg.policies:
        return policy_table(cfg, held, benign)
    rows = [dict(id=f"{p['id']}:{name}", prompt_id=p["id"], variant=name, system=system, prompt=p["prompt"])
            for p in held for name, system in eval_variants(cfg)]
    rows += [dict(id=f"{p['id']}:{UNSEEN}{name}", prompt_id=p["id"], variant=f"{UNSEEN}{name}", system=system,
                  prompt=p["prompt"]) for p in unseen for name, system in (("s1", cfg.prompts.s1),
                                                                            ("s0", cfg.prompts.s0))]
    rows += [dict(id=f"{p['id']}:{BENIGN_VARIANT}", prompt_id=p["id"], variant=BENIGN_VARIANT,
                  system=cfg.prompts.s1, prompt=p["prompt"]) for p in benign]
    return pa.Table.from_pylist(rows)


def policy_table(cfg: CSTConfig, held: list[dict], benign: list[dict]) -> pa.Table:
    """`policies`: each held-out prompt under each policy's wordings (trained and unseen), with its
    category; the benign questions under each policy's first wording (`benign:<policy>`)."""

    rows = [dict(id=f"{p['id']}:{variant}", prompt_id=p["id"], variant=variant, system=system, prompt=p["prompt"],
                 category=p.get("category") or source_category(p.get("source", "")))
            for p in held for variant, _, system in policy_wordings(cfg.policies)]
    rows += [dict(id=f"{p['id']}:benign:{pol.name}", prompt_id=p["id"], variant=f"benign:{pol.name}",
                  system=pol.prompts[0], prompt=p["prompt"], category="") for p in benign for pol in cfg.policies]
    return pa.Table.from_pylist(rows)
