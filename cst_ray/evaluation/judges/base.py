"""Judges label an answer safe or unsafe, with a score in [0, 1] (1 = safe).

All judges share one interface so that the evaluation and the generation filters do not
care which one runs. `refusal` is the pattern judge: an answer that refuses (the usual
refusal-prefix list used since GCG/AdvBench) is safe; anything else is unsafe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Verdict:
    safe: bool
    score: float  # in [0, 1]; 1 = certainly safe


class Judge(ABC):
    """What every judge has: `name`; `path`, the folder of a trained judge ("" for judges without
    one); `card`, that judge's card (judge.json); `stats`, counts a judge keeps while it labels
    (e.g. the LLM judge's replies without a verdict). The class defaults are empty and read-only;
    a judge with a card or counts sets its own on the instance."""

    name: str
    path: str = ""
    card: Mapping[str, Any] = MappingProxyType({})
    stats: Mapping[str, Any] = MappingProxyType({})

    @abstractmethod
    def judge(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        """One verdict per (prompt, response)."""
