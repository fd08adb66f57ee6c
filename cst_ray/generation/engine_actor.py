"""The base of the Ray Data callable classes that hold an engine: one model load per actor."""

from __future__ import annotations

import os

from cst_ray.config.schema import EngineConfig
from cst_ray.core.ray_env import apply_worker_env
from cst_ray.engines.base import build_engine, has_cuda, set_cpu_threads


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class EngineActor:
    """Shared set-up: threads for CPU engines, then one engine for the actor's lifetime."""

    def __init__(self, model_path: str, model_name: str, engine: EngineConfig, threads: int,
                 trust_remote_code: bool, crash_marker: str = ""):
        apply_worker_env()
        if not has_cuda():
            set_cpu_threads(threads)
        self.engine = build_engine(model_path, engine, trust_remote_code=trust_remote_code)
        self.model_name = model_name
        self.node_id = node_id()
        # Fault-injection hook for the exactly-once tests: the first actor to finish a batch
        # exits hard, once per marker file.
        self._crash_marker = crash_marker
        self._batches = 0

    def _maybe_crash(self) -> None:
        self._batches += 1
        if self._crash_marker and self._batches == 1:
            try:
                fd = os.open(self._crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)
