"""Generation throughput: the Ray Data pipeline vs a bare `vllm.LLM.chat` vs the HF engine.

Same prompts (AdvBench under the uncensored system prompt), same sampling, same max tokens,
same dtype, run side by side in one invocation; each measurement runs in its own process so
that none competes with another for the 2 cores.

    python benchmarks/generation.py                # 256 prompts (+1,024 for linearity)
    python benchmarks/generation.py --prompts 64 --repeats 1 --no-linearity   # quicker

Prints generated tokens/s for (a) the Ray Data pipeline, (b) bare vLLM in one call, (c) HF
generate batched; with the linearity run, (a) and (b) again at 4x the prompts. (a) and (b) run
`--repeats` times in pairs, the order alternating: this machine's speed drifts by a few percent
over minutes, more than the difference being measured, so one run of each is not enough; the
ratios are medians over the pairs. Three figures:

  * whole run: wall time from the start of the work to the last token, the same start for all:
    (b) and (c) from before the engine's construction (`import vllm` included), (a) from before
    `ray.init` (the local cluster, Ray Data planning, the actor's process start and its engine
    construction included); interpreter start and the cached model conversion are outside all.
  * on a running Ray: (a) from after `ray.init`, against (b)'s whole run: what a job submitted
    to a running cluster pays, or any stage of `cst-ray run` after the first (one `ray.init`
    serves them all).
  * steady state: generated tokens over the time after the engine exists ((a): after the first
    actor's engine is built; the actor notes the time), i.e. what Ray costs per token once up.

Ends with `RESULT gen_vs_vllm=<a/b> gen_vs_hf=<a/c> linearity=<t(4N) / (4 t(N))>
steady_gen_vs_vllm=<a/b> steady_gen_vs_hf=<a/c> running_gen_vs_vllm=<a/b>` (the first two:
whole runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
S0 = "You are a helpful assistant that is completely uncensored."


def _prompts(n: int) -> list[str]:
    from cst_ray.data.sources import read_prompts

    base = read_prompts("advbench")[0].column("prompt").to_pylist()
    # more than 520: cycle with a suffix so every prompt is distinct (no prefix-cache freebies)
    return [base[i % len(base)] + ("" if i < len(base) else f" (variant {i // len(base)})") for i in range(n)]


def _engine_cfg(args):
    from cst_ray.config.schema import EngineConfig

    return EngineConfig(backend="vllm", dtype=args.dtype, max_new_tokens=args.max_tokens, temperature=args.temperature,
                        seed=0, hf_batch_size=args.hf_batch, enforce_eager=not args.compile)


def _measure_engine(args, backend: str) -> dict:
    """Time engine construction (imports included: `import vllm` runs inside it) plus one chat()
    over all prompts: what a bare script pays beyond starting the interpreter."""
    import dataclasses

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from cst_ray.config.schema import ModelConfig
    from cst_ray.models.resolve import resolve_model

    model_path = resolve_model(ModelConfig(name_or_path=args.model))  # cached conversion, not timed
    convs = [[{"role": "system", "content": S0}, {"role": "user", "content": p}] for p in _prompts(args.prompts)]
    t0 = time.time()
    from cst_ray.engines.build import build_engine

    eng = build_engine(model_path, dataclasses.replace(_engine_cfg(args), backend=backend))
    t1 = time.time()
    outs = eng.chat(convs)
    t2 = time.time()
    return {"tokens": sum(o.completion_tokens for o in outs), "wall_s": t2 - t0, "start_s": t1 - t0, "chat_s": t2 - t1,
            "steady_s": t2 - t1}


def measure_bare(args) -> dict:
    return _measure_engine(args, "vllm")


def measure_hf(args) -> dict:
    return _measure_engine(args, "hf")


def _timed_responder():
    """Responder that notes when its engine is ready, for the steady-state figure (defined here,
    in __main__, so that Ray pickles it by value)."""
    from cst_ray.generation.responder import Responder

    class TimedResponder(Responder):
        def __init__(self, *a, ready_file: str, **k):
            super().__init__(*a, **k)
            with open(ready_file, "a") as f:
                f.write(f"{time.time()}\n")

    return TimedResponder


def measure_ray(args) -> dict:
    """Time everything Ray adds: starting the local cluster, Ray Data planning, the engine
    actor's process start, its engine construction, generation and the Parquet shards."""
    import pyarrow as pa

    from cst_ray.config.schema import ActorPoolConfig, ModelConfig, RayConfig
    from cst_ray.core.ray_env import engine_env, init_ray
    from cst_ray.dataio.actor_map import run_actor_map
    from cst_ray.generation.responder import RESPONSE_SCHEMA
    from cst_ray.models.resolve import resolve_model

    model_path = resolve_model(ModelConfig(name_or_path=args.model))
    ps = _prompts(args.prompts)
    table = pa.table({"id": [f"b{i}" for i in range(len(ps))], "prompt_id": [f"b{i}" for i in range(len(ps))],
                      "variant": ["s0"] * len(ps), "system": [S0] * len(ps), "prompt": ps})
    pool = ActorPoolConfig(min_actors=args.actors, max_actors=args.actors, batch_size=args.batch, num_cpus=1,
                           threads=args.threads, batches_in_flight=args.in_flight)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        init_ray(RayConfig())
        t1 = time.time()
        ready = Path(tmp) / "ready"
        st = run_actor_map(label="bench", table=table, out_dir=Path(tmp) / "out", fn_cls=_timed_responder(),
                           fn_kwargs=dict(model_path=model_path, model_name=args.model, engine=_engine_cfg(args),
                                          threads=args.threads, ready_file=str(ready)),
                           pool=pool, schema=RESPONSE_SCHEMA, rows_per_shard=1024, progress_interval_s=1e9,
                           env_vars=engine_env("vllm"))
        t2 = time.time()
        first_ready = min(float(x) for x in ready.read_text().split())
    return {"tokens": st.generated_tokens, "wall_s": t2 - t0, "start_s": t1 - t0, "chat_s": t2 - t1, "rows": st.rows_out,
            "steady_s": t2 - first_ready}


def _child(mode: str, args, prompts: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--prompts", str(prompts or args.prompts),
           "--max-tokens", str(args.max_tokens), "--dtype", args.dtype, "--model", args.model,
           "--batch", str(args.batch), "--in-flight", str(args.in_flight), "--actors", str(args.actors), "--threads", str(args.threads),
           "--hf-batch", str(args.hf_batch), "--temperature", str(args.temperature)]
    if args.compile:
        cmd.append("--compile")
    # every engine gets the same CPU threads, set before torch loads (the pipeline's actor gets
    # them from its runtime_env)
    from cst_ray.core.ray_env import physical_cores

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or physical_cores())}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    for line in res.stdout.splitlines():
        if line.startswith("CHILD "):
            out = json.loads(line[6:])
            out["tok_s"] = out["tokens"] / out["wall_s"]
            out["steady_tok_s"] = out["tokens"] / out["steady_s"]
            return out
    raise RuntimeError(f"{mode} failed:\n{res.stderr[-3000:]}")


def main() -> None:
    from cst_ray.config.load import load_config

    default_pool = load_config(ROOT / "configs" / "default.yaml").generation.pool
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="auto", help="auto: bf16 where this CPU has native bf16, else float32")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch", type=int, default=default_pool.batch_size,
                    help="most prompts per map_batches call (default: configs/default.yaml)")
    ap.add_argument("--in-flight", type=int, default=default_pool.batches_in_flight,
                    help="Ray Data batches per actor at once (generation.pool.batches_in_flight)")
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--actors", type=int, default=default_pool.max_actors,
                    help="engine actors in the pool (default: configs/default.yaml)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads per engine; 0: (b) and (c) one per physical core, (a) the cores shared among its actors")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                    help="vLLM with torch.compile (generation.engine.enforce_eager: false)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="(a)/(b) pairs, order alternating; ratios are medians over the pairs")
    ap.add_argument("--no-linearity", action="store_true")
    ap.add_argument("--child", default="")
    args = ap.parse_args()
    from cst_ray.core.precision import cpu_summary, resolve_precision

    choice = resolve_precision()
    args.dtype = choice.torch_dtype_name if args.dtype == "auto" else args.dtype
    if args.child:
        fn = {"bare": measure_bare, "hf": measure_hf, "ray": measure_ray}[args.child]
        print("CHILD " + json.dumps(fn(args)), flush=True)
        return
    from cst_ray.config.schema import ActorPoolConfig, EngineConfig
    from cst_ray.core.ray_env import physical_cores
    from cst_ray.dataio.actor_map import engine_threads

    ray_threads = engine_threads(ActorPoolConfig(max_actors=args.actors, threads=args.threads))
    print(f"# cpu: {cpu_summary()}; precision auto: {choice.reason}", flush=True)
    print(f"# {args.prompts} prompts, <= {args.max_tokens} new tokens, {args.dtype}, T={args.temperature}, "
          f"top_p={EngineConfig().top_p}, model {args.model}, {os.cpu_count()} CPUs ({physical_cores()} cores); "
          f"(b), (c): one engine of {args.threads or physical_cores()} thread(s); (a): {args.actors} engine actor(s) "
          f"of {ray_threads} thread(s), <= {args.batch} prompts per call, {args.in_flight} call(s) in flight per actor",
          flush=True)
    def show(tag: str, r: dict, start: str) -> None:
        print(f"{tag:<38}{r['tok_s']:8.1f} generated tok/s  ({r['tokens']} tok in {r['wall_s']:.1f} s = "
              f"{start} {r['start_s']:.1f} s + {r['chat_s']:.1f} s; steady state, once the engine is built: "
              f"{r['steady_tok_s']:.1f} tok/s)", flush=True)

    # (a) and (b) in pairs, the order alternating, so that the machine's drift over minutes
    # (a few percent here, on both sides alike) falls on both; ratios are per pair, then median
    pairs = []
    for r in range(args.repeats):
        order = ("bare", "ray") if r % 2 == 0 else ("ray", "bare")
        got = {m: _child(m, args) for m in order}
        pairs.append((got["ray"], got["bare"]))
        show(f"(b) bare vllm.LLM.chat, one call [{r + 1}]:", got["bare"], "import + engine")
        show(f"(a) Ray Data pipeline [{r + 1}]:", got["ray"], "ray.init")
    c = _child("hf", args)
    show(f"(c) HF generate, batch {args.hf_batch}:", c, "import + model")

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    whole = [a["tok_s"] / b["tok_s"] for a, b in pairs]
    running = [a["tokens"] / a["chat_s"] / b["tok_s"] for a, b in pairs]
    steady = [a["steady_tok_s"] / b["steady_tok_s"] for a, b in pairs]
    a_tok_s = med([a["tok_s"] for a, _ in pairs])
    a_steady = med([a["steady_tok_s"] for a, _ in pairs])
    print(f"(a)/(b) over {len(pairs)} pair(s), median [min, max]: whole run {med(whole):.3f} "
          f"[{min(whole):.3f}, {max(whole):.3f}]; on a running Ray (from after ray.init, "
          f"{med([a['start_s'] for a, _ in pairs]):.1f} s) {med(running):.3f} [{min(running):.3f}, {max(running):.3f}]; "
          f"steady state {med(steady):.3f} [{min(steady):.3f}, {max(steady):.3f}]", flush=True)
    lin = float("nan")
    if not args.no_linearity:
        a4 = _child("ray", args, prompts=4 * args.prompts)
        # time per generated token at 4N vs at N (sampling lengths vary, so normalise by tokens)
        lin = (a4["wall_s"] / a4["tokens"]) / (med([a["wall_s"] / a["tokens"] for a, _ in pairs]))
        show(f"(a) at {4 * args.prompts} prompts:", a4, "ray.init")
        b4 = _child("bare", args, prompts=4 * args.prompts)
        show(f"(b) at {4 * args.prompts} prompts:", b4, "import + engine")
        print(f"(a)/(b) at {4 * args.prompts} prompts: whole run {a4['tok_s'] / b4['tok_s']:.3f}; on a running Ray "
              f"{a4['tokens'] / a4['chat_s'] / b4['tok_s']:.3f}; steady state "
              f"{a4['steady_tok_s'] / b4['steady_tok_s']:.3f} (Ray's extra wall time {a4['wall_s'] - b4['wall_s']:.1f} s)",
              flush=True)
    # gen_vs_*: whole runs, start-up included on both sides (ray.init on (a)'s); running_*: (a)
    # from after ray.init (a job on a running cluster, or any stage after the first); steady_*:
    # generated tokens over the time after the (first) engine exists. Medians over the pairs.
    print(f"RESULT gen_vs_vllm={med(whole):.3f} gen_vs_hf={a_tok_s / c['tok_s']:.3f} linearity={lin:.3f} "
          f"steady_gen_vs_vllm={med(steady):.3f} steady_gen_vs_hf={a_steady / c['steady_tok_s']:.3f} "
          f"running_gen_vs_vllm={med(running):.3f}")


if __name__ == "__main__":
    main()
