"""Training throughput and memory: cst-ray (Ray Train + DeepSpeed ZeRO-3) vs TRL's DPOTrainer.

Same model (SmolLM2-135M-Instruct), same pairs, same hyper-parameters (max length, beta,
learning rate, global batch, steps, precision), run one after the other in one invocation,
each in its own process so that neither competes with the other for the 2 cores.

    pip install -e '.[cpu,bench]'          # TRL is a benchmark-only extra
    python benchmarks/training.py          # 64 pairs
    python benchmarks/training.py --pairs 16   # quicker

Tokens are the non-padding tokens of chosen and rejected sequences (prompt included) as the
chat template tokenizes them; both trainers see the same pairs, so the ratio of tokens/s is
the inverse ratio of training time. cst-ray's time always includes its reference pass, since
TRL computes the reference inside its steps: by default (`--reference worker_precompute`) the
training workers score every pair once before step 1; `--reference precomputed` runs the Ray
Data reference stage first.

Memory is the peak of the summed PSS of the whole process tree of each run, sampled every
`--sample-interval` s (1 s): for cst-ray that is the driver, GCS, raylet, dashboard agents, Ray Data actors and
Ray Train workers; for TRL the single Python process. Peak summed RSS is printed too.

Also printed: ZeRO-3's per-worker parameter partition for 1 vs 2 workers.

The last line is `RESULT tokens_per_s_ratio=<a/b> rss_ratio=<a/b>` (memory: summed PSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "configurable-system-prompt-multitask.json"
from procmem import TreeMemory  # noqa: E402  (benchmarks/procmem.py)

# ----------------------------------------------------------------------------- data


def load_pairs(args) -> list[dict]:
    from cst_ray.data.pairs import read_pair_file

    path = args.pairs_file or (str(SHARED) if SHARED.is_file() else "")
    if not path:
        sys.exit("no pair file: pass --pairs-file (JSON/JSONL/Parquet with system, prompt, chosen, rejected), e.g. "
                 "a run's pairs/cst.parquet, or the author's configurable-system-prompt-multitask.json")
    pairs, _ = read_pair_file(path, tasks=("harmless",) if path.endswith(".json") and "multitask" in path else ())
    if len(pairs) < args.pairs:
        sys.exit(f"{path} holds {len(pairs)} usable pairs, fewer than --pairs {args.pairs}")
    return pairs[: args.pairs]


def token_stats(pairs: list[dict], model_path: str, max_length: int, batch: int) -> dict:
    from transformers import AutoTokenizer

    from cst_ray.training.tokenize import tokenize_pairs

    tok = AutoTokenizer.from_pretrained(model_path)
    rows, st = tokenize_pairs(tok, pairs, max_length=max_length, min_response_tokens=1)
    lens = [(len(r["prompt_ids"]) + len(r["chosen_ids"]), len(r["prompt_ids"]) + len(r["rejected_ids"])) for r in rows]
    real = sum(a + b for a, b in lens)
    # padded tokens a plain (unsorted) loader processes: batches in order, chosen+rejected padded
    # to the longest of the batch
    padded = sum(2 * max(max(p) for p in lens[i:i + batch]) * len(lens[i:i + batch]) for i in range(0, len(lens), batch))
    return {"pairs": len(rows), "tokens": real, "padding_share_unsorted": round(1 - real / padded, 3),
            "tokenize": st.as_dict()}


def run_child(mode: str, args, work: Path) -> dict:
    out = work / f"{mode}.json"
    cmd = [sys.executable, __file__, "--child", mode, "--work", str(work), *sys.argv[1:]]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    mem = TreeMemory(proc.pid, interval=args.sample_interval)
    rc = proc.wait()
    m = mem.stop()
    if rc != 0 or not out.is_file():
        raise SystemExit(f"[bench] {mode} failed (exit {rc})")
    res = json.loads(out.read_text())
    res.update(m, process_wall_s=round(time.time() - t0, 1))
    return res


# ----------------------------------------------------------------------------- children


def _cfg_overrides(args, work: Path, workers: int, steps: int) -> list[str]:
    return [f"run_dir={work / 'cst'}", f"model.name_or_path={args.model}", f"train.num_workers={workers}",
            f"train.threads_per_worker={max(1, args.threads // workers)}", f"train.max_length={args.max_length}",
            f"train.micro_batch_size={args.batch // workers}", "train.grad_accum=1", f"train.max_steps={steps}",
            f"train.lr={args.lr}", f"train.beta={args.beta}", f"train.precision={args.precision}",
            f"train.gradient_checkpointing={'true' if args.gradient_checkpointing else 'false'}", "train.warmup_ratio=0", "train.scheduler=linear", "train.zero_stage=3",
            f"train.reference={args.reference}", "train.checkpoint_every=0", "train.min_response_tokens=1",
            "pairs.reference_logps=true", f"pairs.reference_dtype={'bfloat16' if args.precision == 'bf16' else 'float32'}",
            f"generation.pool.threads={args.threads}", "generation.pool.num_cpus=1"]


def child_cst(args, work: Path, workers: int, steps: int, tag: str) -> None:

    from cst_ray.config.load import load_config
    from cst_ray.core.ray_env import init_ray
    from cst_ray.core.stats import read_metrics
    from cst_ray.models.resolve import resolve_model
    from cst_ray.stages.reference import add_reference_logps
    from cst_ray.training.driver import run_training

    pairs = json.loads((work / "pairs.json").read_text())
    cfg = load_config(None, _cfg_overrides(args, work / tag, workers, steps))
    init_ray(cfg.ray)
    model_path = resolve_model(cfg.model)
    ref_s = 0.0
    if args.reference == "precomputed":
        t0 = time.time()
        from cst_ray.data.pairs import to_table

        tables, _ = add_reference_logps(cfg, {"cst": to_table(pairs)}, work / tag / "pairs")
        pairs = tables["cst"].to_pylist()
        ref_s = time.time() - t0
    out = work / tag / "train"
    st = run_training(cfg, pairs, model_path=model_path, out_dir=out)
    m = read_metrics(out / "metrics.jsonl")
    step_s = [x["tokens"] / x["tokens_per_s"] for x in m]
    if args.reference == "worker_precompute":  # timed by the workers, outside the step times
        ref_s = float(m[0].get("time/reference_pass_s", 0.0)) if m else 0.0
    res = {"steps": len(m), "tokens": sum(x["tokens"] for x in m), "train_s": sum(step_s),
           "train_s_after_first": sum(step_s[1:]), "tokens_after_first": sum(x["tokens"] for x in m[1:]),
           "reference_pass_s": ref_s, "losses": [x["loss"] for x in m],
           "param_partition_bytes": m[0].get("memory/param_partition_bytes") if m else None,
           "tokenize": st["tokenize"]}
    (work / f"{tag}.json").write_text(json.dumps(res))


def child_trl(args, work: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from cst_ray.config.schema import ModelConfig
    from cst_ray.models.resolve import resolve_model

    torch.set_num_threads(args.threads)
    model_path = resolve_model(ModelConfig(name_or_path=args.model))
    pairs = json.loads((work / "pairs.json").read_text())
    ds = Dataset.from_list([{"prompt": [{"role": "system", "content": p["system"]}, {"role": "user", "content": p["prompt"]}],
                             "chosen": [{"role": "assistant", "content": p["chosen"]}],
                             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    tok = AutoTokenizer.from_pretrained(model_path)
    # fp32 weights; with --precision bf16 the Trainer autocasts (mixed precision, fp32 master
    # weights and optimizer states), the counterpart of DeepSpeed's bf16 mode
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    steps = len(pairs) // args.batch
    cfg = DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                    learning_rate=args.lr, beta=args.beta, max_length=args.max_length, max_steps=steps,
                    lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, save_strategy="no", report_to=[],
                    use_cpu=True, bf16=args.precision == "bf16", seed=0, dataloader_num_workers=0,
                    max_grad_norm=1.0, disable_tqdm=True)

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, *a, **k):
            if not self.marks:
                self.marks.append(time.time())

        def on_step_end(self, *a, **k):
            self.marks.append(time.time())

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    timer = Timer()
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
    trainer.train()
    d = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    (work / "trl.json").write_text(json.dumps({"steps": len(d), "train_s": sum(d), "train_s_after_first": sum(d[1:]),
                                               "losses": timer.losses}))


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--pairs-file", default="")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2, help="global batch (pairs per optimizer step)")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="auto: bf16 where this CPU has native bf16 (AMX, AVX512-BF16), else fp32")
    ap.add_argument("--workers", type=int, default=1, help="cst-ray training workers")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads per run (split over workers)")
    ap.add_argument("--reference", choices=["worker_precompute", "precomputed", "separate"], default="worker_precompute",
                    help="worker_precompute: the training workers' own reference pass before step 1; "
                         "precomputed: the Ray Data reference stage first (timed as the reference pass)")
    ap.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                    help="cst-ray only (reentrant, recomputes each layer in backward)")
    ap.add_argument("--sample-interval", type=float, default=1.0,
                    help="seconds between memory samples (reading smaps costs the sampled processes time)")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--child", default="")
    ap.add_argument("--work", default="")
    args = ap.parse_args()
    from cst_ray.core.precision import resolve_precision

    choice = resolve_precision()
    args.precision = choice.train_precision if args.precision == "auto" else args.precision
    if args.child:
        work = Path(args.work)
        steps = args.pairs // args.batch
        if args.child == "trl":
            child_trl(args, work)
        elif args.child == "cst":
            child_cst(args, work, args.workers, steps, "cst")
        elif args.child.startswith("zero3_"):
            child_cst(argparse.Namespace(**{**vars(args), "reference": "separate", "batch": int(args.child[6:])}),
                      work, int(args.child[6:]), 1, args.child)
        return

    work = Path(tempfile.mkdtemp(prefix="cst-bench-train-"))
    try:
        compare(args, work)
    finally:  # checkpoints and exports: ~6 GiB per invocation
        shutil.rmtree(work, ignore_errors=True)


def compare(args, work: Path) -> None:
    from cst_ray.config.schema import ModelConfig
    from cst_ray.core.precision import cpu_summary, resolve_precision
    from cst_ray.models.resolve import resolve_model

    print(f"# cpu: {cpu_summary()}; precision auto: {resolve_precision().reason}; running {args.precision}", flush=True)
    pairs = load_pairs(args)
    (work / "pairs.json").write_text(json.dumps(pairs))
    model_path = resolve_model(ModelConfig(name_or_path=args.model))  # convert once, outside the timings
    ts = token_stats(pairs, model_path, args.max_length, args.batch)
    print(f"[bench] {ts['pairs']} pairs, {ts['tokens']} non-padding tokens, padding share of an unsorted loader "
          f"{ts['padding_share_unsorted']:.0%}, max_length {args.max_length}, batch {args.batch}, {args.precision}",
          flush=True)

    a = run_child("cst", args, work)
    a_tok_s = a["tokens"] / (a["train_s"] + a["reference_pass_s"])
    print(f"[bench] (a) cst-ray {args.workers} worker(s), reference={args.reference}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}: {a['steps']} steps, "
          f"train {a['train_s']:.1f}s + reference pass {a['reference_pass_s']:.1f}s -> {a_tok_s:.1f} tok/s "
          f"(train only {a['tokens'] / a['train_s']:.1f}, steady state {a['tokens_after_first'] / max(a['train_s_after_first'], 1e-9):.1f}); "
          f"peak PSS {a['peak_pss_gib']:.2f} GiB over {a['processes']} processes (RSS {a['peak_rss_gib']:.2f}); "
          f"process wall {a['process_wall_s']}s", flush=True)
    print(f"[bench]     largest processes at the peak: {'; '.join(a['top_at_peak'])}", flush=True)
    zero = {}
    for w in (1, 2):
        z = run_child(f"zero3_{w}", args, work)
        zero[w] = z["param_partition_bytes"]
    print(f"[bench] ZeRO-3 parameter partition per worker: 1 worker {zero[1] / 2**20:.1f} MiB, "
          f"2 workers {zero[2] / 2**20:.1f} MiB (ratio {zero[2] / zero[1]:.2f})", flush=True)
    if args.skip_trl:
        return
    b = run_child("trl", args, work)
    b_tok_s = ts["tokens"] / b["train_s"]
    print(f"[bench] (b) TRL DPOTrainer: {b['steps']} steps, train {b['train_s']:.1f}s -> {b_tok_s:.1f} tok/s; "
          f"peak PSS {b['peak_pss_gib']:.2f} GiB (RSS {b['peak_rss_gib']:.2f}); process wall {b['process_wall_s']}s",
          flush=True)
    print(f"[bench] first losses: cst-ray {[round(x, 4) for x in a['losses'][:3]]}  TRL {[round(x, 4) for x in b['losses'][:3]]}")
    print(f"RESULT tokens_per_s_ratio={a_tok_s / b_tok_s:.3f} rss_ratio={a['peak_pss_gib'] / b['peak_pss_gib']:.3f}")


if __name__ == "__main__":
    main()
