"""Ray start-up and the process environment every stage shares.

`init_ray` joins the cluster a job was submitted to (RAY_ADDRESS or `ray.address` in config)
or starts the embedded local cluster: every Ray server on 127.0.0.1 (`keep_local_ray_on_loopback`),
no dashboard, logical CPUs oversubscribed so Ray Data's read/write tasks run beside engine actors. Ray's token
authentication (the local default since Ray 2.59) is left on.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Protocol

from cst_ray.core.cache import cache_dir
from cst_ray.core.log import quiet_ray_console

log = logging.getLogger(__name__)


class RaySettings(Protocol):
    """What `init_ray` reads (config.schema.RayConfig has it; core never imports config)."""

    address: str
    num_cpus: int
    object_store_mb: int
    log_to_driver: bool

# Ray reads this when it is imported. Set to "0" on Linux it treats the machine as one that
# cannot join a multi-node cluster: the node IP is 127.0.0.1 and every server Ray starts (GCS,
# raylet, object manager, workers' gRPC, agents) listens on loopback only. Without it Ray 2.60
# takes the machine's address and its gRPC servers listen on all interfaces (measured;
# tests/test_ray_loopback.py).
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def worker_env() -> dict[str, str]:
    """Environment for every Ray worker process (engines and trainers)."""
    env = {
        # vLLM CPU: in-process engine core (starts in ~3 s instead of ~25 s), small KV cache
        "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        # DeepSpeed compiles its CPU shm op once; keep it across runs
        "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions")),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    env.update(allocator_env())
    for k in ("HF_HUB_OFFLINE", "CST_RAY_CACHE", "VLLM_CPU_OMP_THREADS_BIND", "CST_RAY_ALLOCATOR", "CST_RAY_FAULTS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def physical_cores(sysfs: str | Path = "/sys/devices/system/cpu") -> int:
    """Physical cores this process may run on (hyper-threads of one core count once).

    A CPU engine runs one OpenMP thread per physical core: two threads on the two hyper-threads
    of one core run slower than one (BENCHMARKS.md), while two real cores give ~1.9x."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        try:
            cores.add((Path(sysfs) / f"cpu{c}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:  # no sysfs topology (containers, non-Linux): count logical CPUs
            return max(1, len(cpus))
    return max(1, len(cores))


def engine_env(backend: str) -> dict[str, str]:
    """Environment overrides for generation-engine actors on CPU.

    vLLM-CPU generates faster under glibc's default allocator than under jemalloc (bare engine,
    256 prompts: 32.3 s vs 36.2 s; in the actor 34.3 s vs 38-40 s; BENCHMARKS.md): its
    allocations are few and reused, so jemalloc's gain for training does not apply. The actor
    keeps the user's LD_PRELOAD minus Ray's jemalloc."""
    if backend != "vllm":
        return {}
    je = jemalloc_path()
    keep = [x for x in os.environ.get("LD_PRELOAD", "").split(":") if x and x != je]
    return {"LD_PRELOAD": ":".join(keep)}


def jemalloc_path() -> str:
    """The jemalloc that Ray ships for its own processes (ray/core/libjemalloc.so, Linux), or ''."""
    try:
        import ray
    except ImportError:
        return ""
    p = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    return str(p) if p.is_file() else ""


def allocator_env() -> dict[str, str]:
    """Memory allocator of Ray worker processes (`CST_RAY_ALLOCATOR`: jemalloc | glibc | system).

    PyTorch on CPU has no caching allocator: every activation is a malloc/free. glibc's default
    keeps freed activations in fragmented arenas (a training worker's resident memory measured
    4.7 GiB vs 3.7), and forcing large blocks through mmap (MALLOC_MMAP_THRESHOLD_) returns the
    memory but page-faults every allocation (training 30% slower). jemalloc, which Ray already
    ships and preloads into its own raylet and GCS, gives both: 195 tok/s at 3.7 GiB
    (BENCHMARKS.md). `jemalloc` (default) falls back to `glibc` where Ray has no jemalloc;
    `glibc` is the mmap-threshold setting; `system` leaves the allocator alone.
    LD_PRELOAD acts at process start, so this reaches workers through the runtime_env.
    """
    choice = os.environ.get("CST_RAY_ALLOCATOR", "jemalloc")
    if choice not in ("jemalloc", "glibc", "system"):
        raise ValueError(f"CST_RAY_ALLOCATOR={choice!r}: expected jemalloc, glibc or system")
    if choice == "jemalloc":
        je = jemalloc_path()
        if je:
            pre = os.environ.get("LD_PRELOAD", "")
            return {"LD_PRELOAD": pre if je in pre.split(":") else ":".join(x for x in (je, pre) if x)}
        choice = "glibc"
    if choice == "glibc":
        return {"MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "1048576"),
                "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_", "1048576")}
    return {}


def apply_worker_env() -> None:
    """Called first thing in engine actors and training workers."""
    for k, v in worker_env().items():
        if k != "LD_PRELOAD":  # acts only at process start: set for workers through the runtime_env
            os.environ.setdefault(k, v)


def keep_local_ray_on_loopback() -> bool:
    """Make the embedded local cluster listen on 127.0.0.1 only; -> whether it will.

    Must run before the first `import ray` of this process: Ray reads the setting then. An
    explicit RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in the environment is left as the user set it."""
    if "ray" in sys.modules and os.environ.get(SINGLE_NODE_ENV) != "0":
        log.warning(f"Ray was imported before cst-ray started it, so the local cluster listens on the "
                    f"machine's address too; set {SINGLE_NODE_ENV}=0 before importing ray to keep it on loopback")
        return False
    os.environ.setdefault(SINGLE_NODE_ENV, "0")
    return os.environ[SINGLE_NODE_ENV] == "0"


def init_ray(cfg: RaySettings) -> None:
    address = cfg.address or os.environ.get("RAY_ADDRESS", "")
    if not address:
        keep_local_ray_on_loopback()
    import ray

    if not cfg.log_to_driver:
        quiet_ray_console()  # Ray's logger prints to the console from its import on
    if ray.is_initialized():
        return
    apply_worker_env()
    # Each ray.train.report otherwise blocks ~2 s on the controller's poll.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    if address:
        # A submitted job keeps its own runtime_env (working_dir, pip); workers apply
        # worker_env() themselves (apply_worker_env) so nothing here overrides it.
        source = "ray.address" if cfg.address else "RAY_ADDRESS"
        log.info(f"joining the Ray cluster at {address} ({source}); unset it to run on an embedded local cluster")
        ray.init(address=address, log_to_driver=True)
        return
    runtime_env = {"env_vars": worker_env()}
    # The raylet prestarts one idle Python worker per core for the first driver (~45 MiB PSS
    # each); every process here is an actor or task started on demand, so skip them.
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    # Ray Train's preemption watcher follows node drains of a cluster; a local one-machine
    # cluster has none, and the watcher is one more actor process (~0.12 GiB PSS).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ncpu = cfg.num_cpus or 2 * (os.cpu_count() or 1)
    ray.init(
        address="local",
        num_cpus=ncpu,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        object_store_memory=cfg.object_store_mb * 1024 * 1024,
        runtime_env=runtime_env,
        log_to_driver=cfg.log_to_driver,
        # the "ray" logger of this driver: its start-up notices go to the console only when asked
        logging_level=logging.INFO if cfg.log_to_driver else logging.ERROR,
    )
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if not cfg.log_to_driver:
        quiet_ray_console()


ENGINE_THREADS_ENV = "CST_RAY_ENGINE_THREADS"
