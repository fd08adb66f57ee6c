"""The per-worker CST/DPO training loop (runs inside Ray Train workers).

Read top to bottom: build the policy (optionally LoRA) and hand it to DeepSpeed (ZeRO-3 by
default), build the reference (separate frozen engine, adapter-disabled policy, log-probs
precomputed in the pairs data, or precomputed here by the workers from the policy before its
first update), restore from the latest Ray Train checkpoint if there is one, then
train on deterministic length-grouped batches, reporting TRL-named metrics every step and a
checkpoint every `checkpoint_every` steps and at the end. Finally export a merged HF model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import tempfile
import time
from pathlib import Path

import torch

from cst_ray.config.schema import LoraConfig, TrainConfig
from cst_ray.training.batching import (
    batch_tokens,
    collate,
    dropped_per_epoch,
    epoch_batches,
    micro_batches,
    pair_length,
    to_device,
)
from cst_ray.training.logprobs import PolicyLogProbs
from cst_ray.training.losses import DPOLoss, preference_metrics
from cst_ray.training.model import (
    apply_lora,
    fp32_buffer_names,
    hidden_size,
    load_model,
    param_partition_bytes,
)

CKPT_TAG = "ds"
STATE_FILE = "train_state.json"
REF_FILE = "reference_logps.pt"  # worker_precompute: [pairs, 2] reference log-probs, kept for resume
log = logging.getLogger(__name__)


def reference_share(engine, rows: list[dict], pad_id: int, device, rank: int, world: int, micro_batch: int,
                    grad_accum: int = 1, seed: int = 0, packed: bool = True) -> torch.Tensor:
    """This rank's share of the reference pass: summed response log-probs under the current
    (= initial) policy, each computed exactly as the training step computes the policy's.

    At step 1 the policy is the reference, so the first DPO loss must be log 2 -- which in bf16
    holds only if a pair's reference comes from the same computation as its policy log-probs:
    the same pairs in the same packed row (or padded batch), in the same order. A bf16 matmul's
    rounding may depend on its shape (cuBLAS, and oneDNN on some CPUs, choose kernels and
    reduction splits by the number of rows), and the LM head's bf16 logits turn one rounding
    step into up to ~0.1 nat per token. This pass used to score batches of 2 x micro_batch_size
    pairs, longest first; a first bf16 loss of 0.6452 instead of 0.6931 was reported with it
    (issue 14; on a CPU whose bf16 matmuls ignore the row count it gave log 2).

    So the rank runs its own micro-batches of the first epoch, cut as the step cuts them
    (`epoch_batches`, `micro_batches`, `collate`): every pair trained in the first epoch gets
    the log-probs the step's forward gives it before any update, bit for bit. The pass runs in
    eval mode without grad, which computes the same forward as the step's train mode for a
    model without dropout (train mode adds only dropout and gradient checkpointing's recompute).
    The pairs the first epoch leaves out (its tail: fewer than a global batch, trained from the
    second epoch on, in batches of other pairs) are scored in micro-batches of their own,
    strided over the ranks; their reference is the initial policy's up to that bf16 rounding.

    Every rank runs the same number of forwards (ZeRO-3 gathers parameters collectively): a
    rank with fewer tail pairs repeats a batch and drops the result.
    -> [k, 3] float64 rows (pair index, chosen, rejected); index -1 marks a row left unused.
    """
    lengths = [pair_length(r) for r in rows]
    first_epoch = epoch_batches(lengths, world * micro_batch * grad_accum, seed, 0)
    batches = [idx for b in first_epoch for idx in micro_batches(b, rank, micro_batch, grad_accum)]
    seen = {i for b in first_epoch for i in b}
    tail = [i for i in range(len(rows)) if i not in seen]
    mine = tail[rank::world]
    n_tail = math.ceil(math.ceil(len(tail) / world) / micro_batch)
    batches += [mine[k * micro_batch:(k + 1) * micro_batch] for k in range(n_tail)]
    local = torch.full((len(batches) * micro_batch, 3), -1.0, dtype=torch.float64)
    was_training = engine.training
    engine.eval()
    with torch.no_grad():
        for k, idx in enumerate(batches):
            real = bool(idx)
            idx = idx or mine[-micro_batch:] or tail[:micro_batch]
            logps, _ = engine(**to_device(collate([rows[i] for i in idx], pad_id, packed), device))
            if real:
                n = len(idx)
                local[k * micro_batch:k * micro_batch + n, 0] = torch.tensor(idx, dtype=torch.float64)
                local[k * micro_batch:k * micro_batch + n, 1] = logps[:n].double().cpu()
                local[k * micro_batch:k * micro_batch + n, 2] = logps[n:].double().cpu()
    if was_training:
        engine.train()
    return local


def reference_pass(engine, rows: list[dict], pad_id: int, device, rank: int, world: int, micro_batch: int,
                   grad_accum: int = 1, seed: int = 0, packed: bool = True) -> torch.Tensor:
    """Every pair's reference log-probs: each rank's `reference_share` (the first epoch's
    micro-batches as the training step runs them, then the epoch's tail), shared by one
    all-gather. -> [len(rows), 2] fp32: (chosen, rejected) per pair, in `rows` order."""
    import torch.distributed as dist

    local = reference_share(engine, rows, pad_id, device, rank, world, micro_batch, grad_accum, seed, packed)
    if world > 1:  # NCCL gathers device tensors, gloo CPU ones; every rank's share has the same size
        local_d = local.to(device)
        gathered = [torch.empty_like(local_d) for _ in range(world)]
        dist.all_gather(gathered, local_d)
        gathered = [g.cpu() for g in gathered]
    else:
        gathered = [local]
    table = torch.full((len(rows), 2), float("nan"), dtype=torch.float32)
    for g in gathered:
        g = g[g[:, 0] >= 0]
        table[g[:, 0].long()] = g[:, 1:].float()
    if torch.isnan(table).any():
        raise RuntimeError(f"reference pass left {int(torch.isnan(table).any(1).sum())} pairs without log-probs")
    return table


def check_step1_reference(logps: torch.Tensor, ref: torch.Tensor, mode: str) -> float:
    """Before the first update the policy is the reference: warn when their log-probs differ
    by more than fp32 summation noise (a precomputed reference in another dtype, dropout in
    the policy's train-mode forward, ...), since the first loss is then not log 2.
    -> the largest absolute difference (nats)."""
    diff = (logps.detach().float() - ref.float()).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    if bool((diff > 1e-3 + 1e-4 * ref.float().abs()).any()):
        log.warning("train.reference=%s: before the first update the reference log-probs differ from the policy's "
                    "by up to %.4g nats (policy %s, reference %s); the first loss will not be log 2%s", mode, worst,
                    [round(x, 4) for x in logps.detach().float().tolist()], [round(x, 4) for x in ref.float().tolist()],
                    " (was the Ray Data stage run in the training precision? pairs.reference_dtype)"
                    if mode == "precomputed" else "")
    return worst


def deepspeed_config(cfg: TrainConfig, *, with_optimizer: bool = True, hidden_size: int = 0,
                     keep_in_fp32: list[str] | None = None) -> dict:
    """DeepSpeed config. Bucket sizes follow the model (as HF's "auto" does): DeepSpeed's
    defaults (5e8-element reduce buckets) allocate GiBs of buffers for a 135M model.
    `keep_in_fp32`: names of buffers ZeRO-3's loading must leave in fp32 (`fp32_buffer_names`)."""
    ds: dict = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "zero_optimization": {
            "stage": cfg.zero_stage,
            "overlap_comm": False,
            "contiguous_gradients": True,
            **({"reduce_bucket_size": hidden_size * hidden_size,
                "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
                "stage3_param_persistence_threshold": 10 * hidden_size} if hidden_size else {}),
        },
        "bf16": {"enabled": cfg.precision == "bf16"},
        "steps_per_print": 10**9,
        "checkpoint": {"use_node_local_storage": True},
        "wall_clock_breakdown": False,
    }
    if keep_in_fp32:  # exact names, matched at the end of a module path (keep_in_fp32.py uses re.search)
        ds["data_types"] = {"keep_in_fp32_modules": [rf"(^|\.){re.escape(n)}$" for n in keep_in_fp32]}
    if with_optimizer:
        # The optimizer itself is a client torch.optim.AdamW(fused=True) (see `build_optimizer`):
        # DeepSpeed's torch_adam path steps one flat fp32 tensor with the multi-tensor
        # implementation, whose temporaries are model-sized (+0.8 GiB peak for 135M, measured).
        ds["gradient_clipping"] = cfg.max_grad_norm
    return ds


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (CPU and CUDA): updates in place, no model-sized temporaries."""
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay, fused=True)


def lr_lambda(cfg: TrainConfig, total_steps: int):
    warmup = int(math.ceil(cfg.warmup_ratio * total_steps))

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return f


def _rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def checkpoint_complete(folder: Path, world_size: int) -> bool:
    """A checkpoint is usable only if every rank's shard and the state file are present."""
    if not (folder / STATE_FILE).is_file():
        return False
    d = folder / CKPT_TAG
    shards = list(d.glob("*optim_states.pt")) if d.is_dir() else []
    return len(shards) >= world_size


def _reduce_mean(values: dict, world: int) -> dict:
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return dict(zip(keys, t.tolist()))


def train_loop_per_worker(config: dict) -> None:
    from cst_ray.core.log import setup_logging
    from cst_ray.core.ray_env import apply_worker_env

    apply_worker_env()
    setup_logging()
    import deepspeed
    import ray
    import ray.train
    import torch.distributed as dist

    cfg = TrainConfig(**{k: v for k, v in config["train"].items() if k != "lora"}, lora=LoraConfig(**config["train"]["lora"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, cfg.threads_per_worker))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    on_gpu = torch.cuda.is_available() and cfg.use_gpu
    if on_gpu:
        torch.cuda.set_device(ctx.get_local_rank())
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")

    rows: list[dict] = ray.get(config["data_ref"])
    pad_id = config["pad_token_id"]
    param_dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    hidden = hidden_size(config["model_path"])
    fp32_buffers = fp32_buffer_names(config["model_path"], param_dtype, config["trust_remote_code"]) \
        if cfg.zero_stage == 3 else []  # stages 0-2 load plainly, and DeepSpeed leaves buffers as they are
    ds_cfg = deepspeed_config(cfg, hidden_size=hidden, keep_in_fp32=fp32_buffers)

    # ---- policy (ZeRO-3 partitions weights at load time through HfDeepSpeedConfig)
    from transformers.integrations import HfDeepSpeedConfig

    hf_ds = HfDeepSpeedConfig(ds_cfg) if cfg.zero_stage == 3 else None  # noqa: F841 (alive while loading)
    model = load_model(config["model_path"], param_dtype, config["trust_remote_code"])
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    if cfg.gradient_checkpointing:
        # PEFT under ZeRO-3 crashes with the non-reentrant variant
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    policy = PolicyLogProbs(model, packed=cfg.packing)

    global_batch = world * cfg.micro_batch_size * cfg.grad_accum
    if len(rows) < global_batch:
        raise ValueError(f"{len(rows)} pairs cannot fill one global batch of {global_batch} "
                         f"(train.num_workers x train.micro_batch_size x train.grad_accum)")
    steps_per_epoch = len(rows) // global_batch
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    engine, _, _, scheduler = deepspeed.initialize(
        model=policy,
        optimizer=build_optimizer(cfg, [p for p in policy.parameters() if p.requires_grad]),
        config=ds_cfg,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps)),
    )

    partition_bytes = param_partition_bytes(engine.module)

    # ---- reference
    ref_engine = None
    if cfg.reference == "separate":
        # a frozen ZeRO-3 engine without optimizer: weights stay partitioned from load on
        ref_ds_cfg = deepspeed_config(cfg, with_optimizer=False, hidden_size=hidden, keep_in_fp32=fp32_buffers)
        hf_ds_ref = HfDeepSpeedConfig(ref_ds_cfg) if cfg.zero_stage == 3 else None
        ref_model = PolicyLogProbs(load_model(config["model_path"], param_dtype, config["trust_remote_code"]),
                                   packed=cfg.packing)
        del hf_ds_ref  # transformers keeps a global weak reference: later loads must not partition
        ref_model.requires_grad_(False)
        if cfg.zero_stage == 3:
            ref_engine, *_ = deepspeed.initialize(model=ref_model, config=ref_ds_cfg)
        else:  # stages 0-2 replicate weights anyway: a plain frozen copy
            ref_engine = ref_model.to(device)
        ref_engine.eval()
    del hf_ds

    # ---- resume
    step = 0
    ref_table = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            d = Path(d)
            if not checkpoint_complete(d, world):
                raise RuntimeError(f"checkpoint {d} is incomplete; refusing to resume from it")
            engine.load_checkpoint(str(d), tag=CKPT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
            state = json.loads((d / STATE_FILE).read_text())
            step = int(state["step"])
            if cfg.reference == "worker_precompute":
                if not (d / REF_FILE).is_file():
                    raise RuntimeError(f"checkpoint {d} has no {REF_FILE}: it was not written by a "
                                       "train.reference=worker_precompute run, so the reference is unknown")
                ref_table = torch.load(d / REF_FILE)
            rng_file = d / f"rng_rank{rank}.pt"
            if rng_file.is_file():
                _set_rng_state(torch.load(rng_file, weights_only=False))
        if rank == 0:
            log.info("[train] resumed at step %d/%d", step, total_steps)

    ref_pass_s = 0.0
    if cfg.reference == "worker_precompute" and ref_table is None:
        t0 = time.perf_counter()
        ref_table = reference_pass(engine, rows, pad_id, device, rank, world, cfg.micro_batch_size, cfg.grad_accum,
                                   cfg.seed, packed=cfg.packing)
        ref_pass_s = time.perf_counter() - t0
        if rank == 0:
            log.info("[train] reference pass: %d pairs in %.1fs", len(rows), ref_pass_s)

    loss_fn = DPOLoss(cfg.beta, cfg.loss_type, cfg.label_smoothing)
    lengths = [pair_length(r) for r in rows]
    crash_marker = config.get("crash_marker", "")
    metrics_path = config.get("metrics_path", "")
    engine.train()
    t_last = time.time()
    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        batch_idx = epoch_batches(lengths, global_batch, cfg.seed, epoch)[in_epoch]
        agg: dict[str, float] = {}
        timing = {"time/forward_s": 0.0, "time/backward_s": 0.0, "time/optimizer_s": 0.0}
        tokens = 0
        ref_gap = 0.0
        for micro_idx in micro_batches(batch_idx, rank, cfg.micro_batch_size, cfg.grad_accum):
            micro = [rows[i] for i in micro_idx]
            b = to_device(collate(micro, pad_id, cfg.packing), device)
            tokens += batch_tokens(b)
            B = len(micro)
            t0 = time.perf_counter()
            logps, ntok = engine(**b)
            if ref_table is not None:
                ref = torch.cat([ref_table[micro_idx, 0], ref_table[micro_idx, 1]]).to(device)
            elif cfg.reference == "precomputed":
                ref = torch.tensor([r["ref_chosen_logps"] for r in micro] + [r["ref_rejected_logps"] for r in micro],
                                   dtype=torch.float32, device=device)
            else:
                with torch.no_grad():
                    if cfg.reference == "separate":
                        ref, _ = ref_engine(**b)
                    else:  # adapter
                        with engine.module.model.disable_adapter():
                            ref, _ = engine(**b)
            if step == 0:  # no update yet (DeepSpeed steps at the last micro-batch): policy == reference
                ref_gap = max(ref_gap, check_step1_reference(logps, ref, cfg.reference))
            pol, ref = logps.float(), ref.float()
            if cfg.loss_type == "ipo":  # IPO works on length-averaged log-probs
                pol, ref = pol / ntok.clamp(min=1), ref / ntok.clamp(min=1)
            losses, cr, rr = loss_fn(pol[:B], pol[B:], ref[:B], ref[B:])
            loss = losses.mean()
            if cfg.nll_weight:
                loss = loss + cfg.nll_weight * (-(logps[:B] / ntok[:B].clamp(min=1))).mean()
            t1 = time.perf_counter()
            engine.backward(loss)
            t2 = time.perf_counter()
            engine.step()
            t3 = time.perf_counter()
            timing["time/forward_s"] += t1 - t0
            timing["time/backward_s"] += t2 - t1
            timing["time/optimizer_s"] += t3 - t2
            for k, v in preference_metrics(losses, cr, rr, pol[:B], pol[B:]).items():
                agg[k] = agg.get(k, 0.0) + v / cfg.grad_accum
        if step == 0:  # each rank's largest |policy - reference| log-prob before any update (averaged
            agg["reference/step1_max_abs_diff"] = ref_gap  # over ranks): 0 when computed the same way
        step += 1
        now = time.time()
        agg["tokens"] = tokens
        agg.update(timing)
        metrics = _reduce_mean(agg, world)  # one all-reduce for every metric
        tok_total = metrics.pop("tokens") * world
        if ref_pass_s:  # the first step after the workers' reference pass
            metrics["time/reference_pass_s"], ref_pass_s = ref_pass_s, 0.0
        metrics.update(step=step, epoch=epoch, learning_rate=scheduler.get_last_lr()[0],
                       **{"memory/param_partition_bytes": partition_bytes},
                       tokens_per_s=tok_total / max(now - t_last, 1e-9), tokens=tok_total)
        t_last = now
        if rank == 0 and metrics_path:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == total_steps:
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag=CKPT_TAG)
                torch.save(_rng_state(), Path(tmp) / f"rng_rank{rank}.pt")
                if rank == 0 and ref_table is not None:
                    torch.save(ref_table, Path(tmp) / REF_FILE)
                if rank == 0:
                    (Path(tmp) / STATE_FILE).write_text(json.dumps(
                        {"step": step, "total_steps": total_steps, "world_size": world,
                         "dropped_pairs_per_epoch": dropped_per_epoch(len(rows), global_batch)}))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            if crash_marker and rank == 0 and step == cfg.crash_after_step:
                try:
                    os.close(os.open(crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    os._exit(1)  # fault injection for the resume tests
                except FileExistsError:
                    pass
        else:
            ray.train.report(metrics)

    export_dir = config.get("export_dir")
    if export_dir:
        from cst_ray.training.export import export_model

        if cfg.zero_stage == 3:
            state = engine._zero3_consolidated_16bit_state_dict()
        else:
            state = engine.module.state_dict() if rank == 0 else None
        if rank == 0:
            export_model(state, config, cfg)
        dist.barrier()
