"""Generation engines behind one interface: vLLM (`vllm.LLM`) and Hugging Face `generate`.

Both take a batch of chat conversations (lists of {"role", "content"}) and return one
`Completion` per conversation, so every stage (self-critique, evaluation, judges) is
engine-agnostic. vLLM is imported lazily: the HF engine and all CPU-only code paths work
without it. `engines.build.build_engine` picks the engine a config names.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from cst_ray.core.ray_env import ENGINE_THREADS_ENV, physical_cores

Conversation = list[dict]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def set_cpu_threads(threads: int) -> int:
    """Give a CPU engine `threads` threads; 0 = the count the engine actor pool gave this process
    at its start (`CST_RAY_ENGINE_THREADS`, from `dataio.actor_map.engine_threads`), else one per
    physical core. Not Ray's OMP_NUM_THREADS, which is the actor's num_cpus."""
    n = threads or int(os.environ.get(ENGINE_THREADS_ENV) or 0) or physical_cores()
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    return n


class Engine(ABC):
    """Chat completion over a batch of conversations."""

    model_path: str

    @abstractmethod
    def chat(
        self, conversations: list[Conversation], *, max_new_tokens: int | None = None, temperature: float | None = None
    ) -> list[Completion]:
        """One completion per conversation, in order."""

