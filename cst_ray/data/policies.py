"""Safety policies (`policies:` in the config) compiled to preference pairs.

A policy names system-prompt wordings and, per harm category, a behaviour: `answer` or
`refuse`. Every generated row (x, y0 = an answer, y1 = a refusal) gives one pair per policy: under
one of the policy's wordings (drawn by a hash of the pair id), chosen = the behaviour the policy
asks for in x's category, rejected = the other. The classic CST pair is the special case of two
policies, s1 refusing everything and s0 answering everything.

    s1 = refuse everything         (s1, x, y1 > y0)
    s0 = answer everything         (s0, x, y0 > y1)
    medical = answer human_chatbox, refuse the rest
"""

from __future__ import annotations

import hashlib
from collections import Counter

from cst_ray.config.policies import ANSWER, REFUSE  # noqa: F401  (re-exported)
from cst_ray.config.schema import PolicyConfig
from cst_ray.core.errors import ConfigError


def behaviour(policy: PolicyConfig, category: str) -> str:
    """What `policy` asks for on a request of `category`."""
    if category and category in policy.answer:
        return ANSWER
    if category and category in policy.refuse:
        return REFUSE
    return policy.default


def _draw(key: str, options: list[str], seed: int) -> str:
    return options[int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16) % len(options)]


def _kept(pair_id: str, weight: float, seed: int) -> bool:
    """A stable share `weight` of the pairs of a policy (by a hash of the pair id)."""
    return weight >= 1.0 or int(hashlib.sha1(f"w{seed}:{pair_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < weight


def compile_policy_pairs(generations: list[dict], policies: list[PolicyConfig], categories: dict[str, str],
                         seed: int = 0) -> tuple[list[dict], dict]:
    """Generation rows (`id`, `prompt_id`, `prompt`, `y0`, `y1`) -> one pair per (row, policy),
    and {policy: {category: {answer|refuse: pairs}}}. `categories` maps a prompt id to its
    category ("" = none: the policy's default)."""
    out: list[dict] = []
    counts: dict[str, Counter] = {p.name: Counter() for p in policies}
    for g in generations:
        category = categories.get(g.get("prompt_id") or g["id"], "")
        for p in policies:
            pid = f"{g['id']}:{p.name}"
            if not _kept(pid, p.weight, seed):
                continue
            act = behaviour(p, category)
            chosen, rejected = (g["y0"], g["y1"]) if act == ANSWER else (g["y1"], g["y0"])
            out.append(dict(id=pid, pair_of=g["id"], system=_draw(pid, p.prompts, seed), prompt=g["prompt"],
                            chosen=chosen, rejected=rejected, task="policy", policy=p.name, category=category,
                            behaviour=act))
            counts[p.name][f"{category or '(none)'}:{act}"] += 1
    return out, {name: dict(sorted(c.items())) for name, c in counts.items()}


def policy_pair_sets(generations: list[dict], policies: list[PolicyConfig], categories: dict[str, str],
                     extra: list[dict], benign: list[dict], *, seed: int = 0) -> tuple[list[dict], list[dict], dict]:
    """`policies`: one pair per (generated row, policy), chosen by the policy's behaviour in the
    row's category; benign pairs under every policy's first wording. The DPO baseline keeps the
    pairs whose chosen side is the refusal (it learns to refuse whatever the system prompt).
    -> (CST pairs, DPO-baseline pairs, `compile_policy_pairs`' counts)."""
    compiled, counts = compile_policy_pairs(generations, policies, categories, seed=seed)
    benign_all = [dict(b, id=f"{b['id']}:{p.name}", system=p.prompts[0]) for p in policies for b in benign]
    refusing = [c for c in compiled if c["behaviour"] == "refuse"]
    return compiled + extra + benign_all, refusing + extra + benign_all, counts


def policy_wordings(policies: list[PolicyConfig]) -> list[tuple[str, str, str]]:
    """(variant, policy name, wording) for evaluation: `<policy>` is its first training wording,
    `<policy>:unseen_<i>` each wording it never trained on."""
    out = []
    for p in policies:
        out.append((p.name, p.name, p.prompts[0]))
        out += [(f"{p.name}:unseen_{i}", p.name, w) for i, w in enumerate(p.unseen, start=1)]
    return out


def check_policy_categories(policies: list[PolicyConfig], categories: list[str]) -> dict:
    """Every category a policy names must be one the prompts carry. -> {category: prompts}."""
    have = Counter(c for c in categories)
    for i, p in enumerate(policies):
        for field, cats in (("answer", p.answer), ("refuse", p.refuse)):
            unknown = [c for c in cats if c not in have]
            if unknown:
                known = ", ".join(sorted(c for c in have if c)) or "none"
                raise ConfigError(f"policy {p.name!r} names category {unknown[0]!r}, which no prompt of data.source "
                                  f"carries (categories: {known})", key=f"policies[{i}].{field}")
    return dict(sorted(have.items()))
