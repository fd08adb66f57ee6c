"""The base of the Ray Data callable classes that hold an engine: one model load per actor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import pyarrow as pa

from cst_ray.config.schema import EngineConfig
from cst_ray.core.faults import crash_once
from cst_ray.core.ray_env import apply_worker_env
from cst_ray.engines.base import has_cuda, set_cpu_threads
from cst_ray.engines.build import build_engine


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

    def stream_groups(self, batch: pa.Table, fn: Callable[[pa.Table], pa.Table], rows_per_group: int,
                      rows_at_once: int = 0) -> Iterator[pa.Table]:
        """Yield `fn(group)` for each group of `rows_per_group` rows as soon as that group is done.

        Groups run on threads, `rows_at_once` rows' worth at a time (0 = every group at once),
        and the next group starts as soon as one ends: the engine's continuous batches hold that
        many rows all along (the engines are thread-safe), and since groups end at different times
        their successors start at different times, so groups keep leaving all through the call
        instead of in waves. Ray Data passes each yielded table on as it comes (`run_actor_map`
        keeps them apart): rows reach the driver's shards, and Ray Data sees progress, long before
        the call ends. `rows_per_group` 0 (or >= the batch): one table."""
        if rows_per_group <= 0 or rows_per_group >= batch.num_rows:
            yield fn(batch)
        else:
            groups = [batch.slice(i, rows_per_group) for i in range(0, batch.num_rows, rows_per_group)]
            at_once = max(1, -(-rows_at_once // rows_per_group)) if rows_at_once else len(groups)
            with ThreadPoolExecutor(max_workers=min(at_once, len(groups)), thread_name_prefix="group") as pool:
                for done in as_completed([pool.submit(fn, g) for g in groups]):
                    yield done.result()
        self._count_batch()

    def _count_batch(self) -> None:
        """Count a finished batch; the tests' fault hook (`CST_RAY_FAULTS`) may exit here."""
        self._batches += 1
        crash_once("engine_batch", self._batches)
