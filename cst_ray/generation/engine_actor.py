"""The base of the Ray Data callable classes that hold an engine: one model load per actor."""

from __future__ import annotations

from cst_ray.config.schema import EngineConfig
from cst_ray.core.faults import crash_once
from cst_ray.core.ray_env import apply_worker_env
from cst_ray.engines.base import build_engine, has_cuda, set_cpu_threads


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class EngineActor:
    """Shared set-up: threads for CPU engines, then one engine for the actor's lifetime."""

    def __init__(self, model_path: str, model_name: str, engine: EngineConfig, threads: int,
                 trust_remote_code: bool):
        apply_worker_env()
        if not has_cuda():
            set_cpu_threads(threads)
        self.engine = build_engine(model_path, engine, trust_remote_code=trust_remote_code)
        self.model_name = model_name
        self.node_id = node_id()
        self._batches = 0

    def _count_batch(self) -> None:
        """Count a finished batch; the tests' fault hook (`CST_RAY_FAULTS`) may exit here."""
        self._batches += 1
        crash_once("engine_batch", self._batches)
