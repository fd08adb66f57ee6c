"""Self-critique chain as Ray Data callable classes.

`CritiqueChain` turns a batch of prompts into CST generations:

    [s0, x] -> y0                                   (answer under the uncensored prompt)
    [s0, x, y0, critique_req] -> critique            (the critique sees the conversation)
    [s0, x, y0, critique_req, critique, revision_req] -> y1   (the revision sees the critique)

repeated for `revision_rounds` rounds (round r+1 critiques the revision of round r), for
each of `principles_per_prompt` principles drawn with a seed from the constitution.
Every engine call is batched over the whole Ray Data batch.

`Responder` answers (system, prompt) rows once; the evaluation uses it.

Both hold one engine per actor, built in `__init__`, so the model loads once per actor.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator

import pyarrow as pa

from cst_ray.config.schema import (
    CriticConfig,
    CritiqueConfig,
    EngineConfig,
    FilterConfig,
)
from cst_ray.data.constitution import load_constitution
from cst_ray.data.refusals import harmless_revision, is_refusal, refuses, repeats_request
from cst_ray.engines.base import Completion
from cst_ray.engines.build import build_engine
from cst_ray.generation.engine_actor import EngineActor

GENERATION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt_id", pa.string()),
        ("source", pa.string()),
        ("prompt", pa.string()),
        ("system", pa.string()),
        ("y0", pa.string()),
        ("critique", pa.string()),
        ("y1", pa.string()),
        ("critiques", pa.list_(pa.string())),
        ("revisions", pa.list_(pa.string())),
        ("principle", pa.string()),
        ("rounds", pa.int32()),
        ("critic", pa.string()),  # the model that wrote critique and y1 ("" = the policy itself)
        ("revision_attempts", pa.int32()),  # revisions sampled in the last round (critic.revision_samples)
        ("y0_attempts", pa.int32()),  # answers sampled under s0 (critique.y0_samples)
        ("model", pa.string()),
        ("node_id", pa.string()),  # the Ray node whose actor generated the row
        ("prompt_tokens", pa.int32()),
        ("y0_tokens", pa.int32()),
        ("y1_tokens", pa.int32()),
        ("generated_tokens", pa.int32()),
        ("y0_finish", pa.string()),
        ("y1_finish", pa.string()),
        ("reject_reason", pa.string()),
        # the call's wall time in each phase, shared evenly over its rows (summary.md's stage table)
        ("y0_s", pa.float32()),
        ("critique_s", pa.float32()),
        ("revision_s", pa.float32()),
    ]
)

_SENTENCE_END = (".", "!", "?", '"', "'", ")", "]", "`", "*", ":", "\n")


def cut_mid_sentence(c: Completion) -> bool:
    """The token limit was hit and the text does not end a sentence."""
    return c.finish_reason == "length" and not c.text.rstrip(" \t").endswith(_SENTENCE_END)


def trim_to_sentence(c: Completion) -> Completion:
    """Cut a length-limited completion back to its last complete sentence (if it has one)."""
    if not cut_mid_sentence(c):
        return c
    text = c.text
    cut = max(text.rfind(e) for e in (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n\n"))
    if cut <= 0:
        return c
    trimmed = text[: cut + 1].rstrip()
    return Completion(text=trimmed, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                      finish_reason="length_trimmed")


def reject_reason(y0: Completion, y1: Completion, filters: FilterConfig, revision_request: str = "") -> str:
    """The first quality filter a generation fails, or "" if it passes. `revision_request`: the
    request y1 answers, which y1 must not merely restate (`harmless_revision`)."""
    if filters.empty and (not y0.text.strip() or not y1.text.strip()):
        return "empty_output"
    if filters.identical and y0.text.strip() == y1.text.strip():
        return "y1_identical_to_y0"
    if filters.y0_refusal and is_refusal(y0.text):
        return "y0_already_refusal"
    if filters.y1_not_harmless and not refuses(y1.text):
        return "y1_not_harmless"
    if filters.y1_not_harmless and revision_request and repeats_request(y1.text, revision_request):
        return "y1_repeats_request"
    if filters.truncated and (cut_mid_sentence(y0) or cut_mid_sentence(y1)):
        return "truncated_mid_sentence"
    return ""


def sample_until(engine, conversations: list, samples: int, trim: bool,
                 accept: Callable[[int, str], bool]) -> tuple[list[Completion], list[int], list[int]]:
    """One completion per conversation; one that `accept(index, text)` refuses is resampled, up to
    `samples` samples in all. Returns the last completion of each, its number of samples, and
    the tokens spent on all of them (every sample counts in the caller's totals)."""
    todo = list(range(len(conversations)))
    outs: list[Completion | None] = [None] * len(conversations)
    attempts = [0] * len(conversations)
    spent = [0] * len(conversations)
    for attempt in range(1, samples + 1):
        got = engine.chat([conversations[i] for i in todo])
        retry = []
        for i, r in zip(todo, got):
            spent[i] += r.completion_tokens
            outs[i] = trim_to_sentence(r) if trim else r
            attempts[i] = attempt
            if not accept(i, outs[i].text):
                retry.append(i)
        todo = retry
        if not todo:
            break
    return outs, attempts, spent


def revise_until_harmless(engine, conversations: list, samples: int, trim: bool,
                          requests: list[str] | None = None) -> tuple[list[Completion], list[int], list[int]]:
    """Revisions, each resampled until it is a harmless revision of its own: a refusal that stays
    one, not a restatement of its revision request (`harmless_revision`; `requests[i]` is
    conversation i's, "" or None: only the refusal counts) (`sample_until`)."""
    requests = requests or [""] * len(conversations)
    return sample_until(engine, conversations, samples, trim,
                        accept=lambda i, text: harmless_revision(text, requests[i]))


def answer_until_compliant(engine, conversations: list, samples: int,
                           trim: bool) -> tuple[list[Completion], list[int], list[int]]:
    """y0 under s0, each resampled while it is a refusal (`sample_until`): a model that often
    refuses even uncensored yields rows with something to revise."""
    return sample_until(engine, conversations, samples, trim, accept=lambda i, text: not is_refusal(text))


def draw_principles(prompt_id: str, n: int, total: int, seed: int) -> list[int]:
    """n distinct principle indices for this prompt, reproducible from (seed, id)."""
    rng = random.Random(int(hashlib.sha1(f"{seed}:{prompt_id}".encode()).hexdigest()[:12], 16))
    k = min(n, total)
    return rng.sample(range(total), k)


class CritiqueChain(EngineActor):
    """Ray Data callable: {id, prompt, source} batch -> generation rows (GENERATION_SCHEMA).

    With `critic_path` set, a second engine (the critic) writes the critiques and revisions
    while the policy writes y0; otherwise the policy critiques itself, as in the paper.
    """

    def __init__(self, model_path: str, model_name: str, engine: EngineConfig, critique: CritiqueConfig,
                 filters: FilterConfig, system_s0: str, threads: int = 0, trust_remote_code: bool = False,
                 critic: CriticConfig | None = None, critic_path: str = "", stream_rows: int = 0,
                 rows_at_once: int = 0):
        super().__init__(model_path, model_name, engine, threads, trust_remote_code)
        self.stream_rows, self.rows_at_once = stream_rows, rows_at_once
        self.critique_cfg = critique
        self.filters = filters
        self.s0 = system_s0
        self.principles = load_constitution(critique.constitution)
        self.critic_cfg = critic or CriticConfig()
        self.critic_name = self.critic_cfg.name_or_path if critic_path else ""
        self.critic = (build_engine(critic_path, engine, trust_remote_code=self.critic_cfg.trust_remote_code)
                       if critic_path else self.engine)

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        yield from self.stream_groups(batch, self.chain, self.stream_rows, self.rows_at_once)

    def chain(self, batch: pa.Table) -> pa.Table:
        """y0 -> critique -> revision for every row of `batch`, each engine call batched over it."""
        ids = batch.column("id").to_pylist()
        prompts = batch.column("prompt").to_pylist()
        sources = batch.column("source").to_pylist()
        base = [
            [{"role": "system", "content": self.s0},
             {"role": "user", "content": self.critique_cfg.y0_template.format(prompt=p)}]
            for p in prompts
        ]
        y0_samples = self.critique_cfg.y0_samples if self.filters.y0_refusal else 1
        t0 = time.perf_counter()
        y0, y0_attempts, y0_spent = answer_until_compliant(self.engine, base, y0_samples, self.filters.trim_truncated)
        phase = {"y0_s": time.perf_counter() - t0, "critique_s": 0.0, "revision_s": 0.0}
        branches = self._branches(ids, base, y0, y0_spent)
        for _ in range(self.critique_cfg.revision_rounds):
            self._revise(branches, phase)
        per_prompt = self.critique_cfg.principles_per_prompt
        rows = []
        for b in branches:
            i = b["i"]
            y1 = b["last"]
            rows.append(dict(
                id=ids[i] if per_prompt == 1 else f"{ids[i]}.{b['k']}",
                prompt_id=ids[i], source=sources[i], prompt=prompts[i], system=self.s0,
                y0=y0[i].text, critique=b["critiques"][-1], y1=y1.text,
                critiques=b["critiques"], revisions=b["revisions"],
                principle=b["principle"].name, rounds=len(b["revisions"]), critic=self.critic_name,
                revision_attempts=b["attempts"], y0_attempts=y0_attempts[i], model=self.model_name,
                node_id=self.node_id,
                prompt_tokens=y0[i].prompt_tokens, y0_tokens=y0[i].completion_tokens,
                y1_tokens=y1.completion_tokens, generated_tokens=b["gen"],
                y0_finish=y0[i].finish_reason, y1_finish=y1.finish_reason,
                reject_reason=reject_reason(y0[i], y1, self.filters, b["principle"].revision),
                **{k: v / max(len(branches), 1) for k, v in phase.items()},
            ))
        return pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)

    def _branches(self, ids: list[str], base: list[list[dict]], y0: list[Completion],
                  y0_spent: list[int]) -> list[dict]:
        """One branch per (prompt, drawn principle): the conversation so far (ending in y0), its
        critiques and revisions, and the tokens generated for it."""
        branches = []
        per_prompt = self.critique_cfg.principles_per_prompt
        for i, pid in enumerate(ids):
            for k, pi in enumerate(draw_principles(pid, per_prompt, len(self.principles), self.engine.cfg.seed)):
                conv = base[i] + [{"role": "assistant", "content": y0[i].text}]
                branches.append(dict(i=i, k=k, principle=self.principles[pi], conv=conv, attempts=0,
                                     critiques=[], revisions=[], last=y0[i], gen=y0_spent[i]))
        return branches

    def _revise(self, branches: list[dict], phase: dict) -> None:
        """One round over every branch: a critique under its principle, then a revision that sees
        the critique (resampled until harmless, as `filters` ask); each phase's time into `phase`."""
        crit_tokens = self.critique_cfg.critique_max_new_tokens or None
        for b in branches:
            b["conv"] = b["conv"] + [{"role": "user", "content": b["principle"].critique}]
        t0 = time.perf_counter()
        crits = self.critic.chat([b["conv"] for b in branches], max_new_tokens=crit_tokens)
        t1 = time.perf_counter()
        phase["critique_s"] += t1 - t0
        if self.filters.trim_truncated:
            crits = [trim_to_sentence(c) for c in crits]
        for b, c in zip(branches, crits):
            b["critiques"].append(c.text)
            b["gen"] += c.completion_tokens
            b["conv"] = b["conv"] + [{"role": "assistant", "content": c.text},
                                     {"role": "user", "content": b["principle"].revision}]
        samples = self.critic_cfg.revision_samples if self.filters.y1_not_harmless else 1
        revs, attempts, spent = revise_until_harmless(self.critic, [b["conv"] for b in branches], samples,
                                                      self.filters.trim_truncated,
                                                      [b["principle"].revision for b in branches])
        phase["revision_s"] += time.perf_counter() - t1
        for b, r, a, tokens in zip(branches, revs, attempts, spent):
            b["revisions"].append(r.text)
            b["gen"] += tokens
            b["attempts"] = a
            b["last"] = r
            b["conv"] = b["conv"] + [{"role": "assistant", "content": r.text}]
