"""Judges label an answer safe or unsafe, with a score in [0, 1] (1 = safe).

All judges share one interface so that the evaluation and the generation filters do not
care which one runs. `refusal` is the pattern judge: an answer that refuses (the usual
refusal-prefix list used since GCG/AdvBench) is safe; anything else is unsafe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    safe: bool
    score: float  # in [0, 1]; 1 = certainly safe


class Judge(ABC):
    name: str

    @abstractmethod
    def judge(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        """One verdict per (prompt, response)."""


