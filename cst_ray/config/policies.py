"""Validation of the `policies:` section: each rule names the policy, and the key."""

from __future__ import annotations

from cst_ray.config.schema import PolicyConfig
from cst_ray.core.errors import ConfigError

ANSWER, REFUSE = "answer", "refuse"


def validate_policies(policies: list[PolicyConfig]) -> None:
    """ConfigError naming the policy (and category) for each rule a policy set breaks."""
    names = [p.name for p in policies]
    seen: dict[str, str] = {}
    for i, p in enumerate(policies):
        key = f"policies[{i}]"
        if not p.name.strip():
            raise ConfigError("has no name", key=f"{key}.name")
        if p.name in names[:i]:
            raise ConfigError(f"policy name {p.name!r} is used twice", key=f"{key}.name")
        if p.default not in (ANSWER, REFUSE):
            raise ConfigError(f"policy {p.name!r} names no behaviour: set default: answer or refuse "
                              f"(got {p.default!r})", key=f"{key}.default")
        if not p.prompts:
            raise ConfigError(f"policy {p.name!r} has no system-prompt wording", key=f"{key}.prompts")
        both = sorted(set(p.answer) & set(p.refuse))
        if both:
            raise ConfigError(f"policy {p.name!r} both answers and refuses category {both[0]!r}", key=f"{key}.answer")
        if not 0 < p.weight <= 1:
            raise ConfigError(f"policy {p.name!r}: weight must be in (0, 1]", key=f"{key}.weight")
        for w in p.prompts + p.unseen:
            if not w.strip():
                raise ConfigError(f"policy {p.name!r} has an empty wording", key=f"{key}.prompts")
            if w.strip() in seen:
                raise ConfigError(f"policies {seen[w.strip()]!r} and {p.name!r} share the wording {w.strip()[:60]!r}",
                                  key=f"{key}.prompts")
            seen[w.strip()] = p.name
