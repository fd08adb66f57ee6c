"""DeepSpeed's config, the optimizer and the learning-rate schedule of a training run."""

from __future__ import annotations

import math
import re

import torch  # noqa: TID253 (runs only in training workers)

from cst_ray.config.schema import TrainConfig


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
        **({"torch_autocast": {"enabled": True, "dtype": "bfloat16"}} if cfg.precision == "bf16-mixed" else {}),
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
