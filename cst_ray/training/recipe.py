"""The DPO recipe that runs in each Ray Train worker, read top to bottom.

    setup       threads, seeds, the process group, the rows, the policy (LoRA optional) handed
                to DeepSpeed (ZeRO-3 partitions it while it loads)
    reference   one `Reference` per `train.reference` mode (training/reference.py)
    resume      from Ray Train's latest checkpoint: DeepSpeed state, step, RNG, reference table
    train       deterministic length-grouped batches; per step: forward, DPO loss (+ NLL),
                backward, optimizer; TRL-named metrics every step, a checkpoint every
                `checkpoint_every` steps and at the end
    export      a merged Hugging Face model with a model card (rank 0)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import torch  # noqa: TID253 (runs only in training workers)

from cst_ray.core.faults import crash_once
from cst_ray.core.files import append_line
from cst_ray.core.log import setup_logging
from cst_ray.core.precision import resolve_precision
from cst_ray.core.ray_env import apply_worker_env
from cst_ray.training.batching import (
    batch_tokens,
    collate,
    dropped_per_epoch,
    epoch_batches,
    micro_batches,
    pair_length,
    to_device,
)
from cst_ray.training.build_locks import clear_stale_build_locks
from cst_ray.training.checkpoint import (
    CKPT_TAG,
    load_reference_table,
    load_rng_state,
    resumable_state,
    write_checkpoint_files,
)
from cst_ray.training.export import export_model
from cst_ray.training.logprobs import PolicyLogProbs
from cst_ray.training.losses import DPOLoss, preference_metrics
from cst_ray.training.model import apply_lora, fp32_buffer_names, hidden_size, load_model, param_partition_bytes
from cst_ray.training.optim import build_optimizer, deepspeed_config, lr_lambda
from cst_ray.training.reference import (
    AdapterReference,
    PrecomputedReference,
    Reference,
    SeparateReference,
    TableReference,
    check_step1_reference,
    reference_pass,
)
from cst_ray.training.spec import WorkerSpec
from cst_ray.training.tracking import build_tracker

log = logging.getLogger(__name__)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point: `config` is {"spec": WorkerSpec}."""
    apply_worker_env()
    setup_logging()
    DPORecipe(config["spec"]).run()


class DPORecipe:
    def __init__(self, spec: WorkerSpec):
        self.spec, self.cfg, self.plan = spec, spec.train, spec.plan

    def run(self) -> None:
        self.setup()
        self.tracker = build_tracker(self.spec, self.rank)
        try:
            self.reference = self.build_reference()
            self.step = self.resume()
            self.train()
            self.export()
        finally:
            self.tracker.close()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        import deepspeed
        import ray
        import ray.train

        cfg, spec = self.cfg, self.spec
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        torch.set_num_threads(max(1, cfg.threads_per_worker))
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        on_gpu = torch.cuda.is_available() and cfg.use_gpu
        if cfg.precision == "auto":  # chosen on the worker's own hardware (a GPU cluster's driver may have none)
            cfg = self.cfg = dataclasses.replace(cfg, precision=resolve_precision("cuda" if on_gpu else "cpu")
                                                 .train_precision)
        if on_gpu:
            torch.cuda.set_device(ctx.get_local_rank())
        else:  # DeepSpeed's CPU comm op is JIT-loaded under a lock a killed run may have left
            clear_stale_build_locks()
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
        self.device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
        self.rows: list[dict] = ray.get(spec.data_ref)
        self.lengths = [pair_length(r) for r in self.rows]
        if self.plan.steps_per_epoch < 1:
            raise ValueError(f"{len(self.rows)} pairs cannot fill one global batch of {self.plan.global_batch} "
                             f"(train.num_workers x train.micro_batch_size x train.grad_accum)")
        self.dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
        hidden = hidden_size(spec.model_path)
        fp32_buffers = fp32_buffer_names(spec.model_path, self.dtype, spec.trust_remote_code) \
            if cfg.zero_stage == 3 else []  # stages 0-2 load plainly; DeepSpeed leaves buffers as they are
        self.ds_cfg = deepspeed_config(cfg, hidden_size=hidden, keep_in_fp32=fp32_buffers)
        self.ref_ds_cfg = deepspeed_config(cfg, with_optimizer=False, hidden_size=hidden, keep_in_fp32=fp32_buffers)
        self.engine, self.scheduler = self._policy_engine()
        self.partition_bytes = param_partition_bytes(self.engine.module)
        self.loss_fn = DPOLoss(cfg.beta, cfg.loss_type, cfg.label_smoothing)

    def _zero3_loading(self, ds_cfg: dict):
        """While the returned object lives, `from_pretrained` (and PEFT) partition under ZeRO-3:
        transformers keeps only a global weak reference to it."""
        from transformers.integrations import HfDeepSpeedConfig

        return HfDeepSpeedConfig(ds_cfg) if self.cfg.zero_stage == 3 else None

    def _policy_engine(self):
        import deepspeed

        cfg = self.cfg
        hf_ds = self._zero3_loading(self.ds_cfg)  # noqa: F841 (alive until the engine exists)
        model = load_model(self.spec.model_path, self.dtype, self.spec.trust_remote_code)
        if cfg.lora.enabled:
            model = apply_lora(model, cfg.lora)
        if cfg.gradient_checkpointing:
            # PEFT under ZeRO-3 crashes with the non-reentrant variant
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            model.enable_input_require_grads()
        policy = PolicyLogProbs(model, packed=cfg.packing)
        engine, _, _, scheduler = deepspeed.initialize(
            model=policy,
            optimizer=build_optimizer(cfg, [p for p in policy.parameters() if p.requires_grad]),
            config=self.ds_cfg,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, self.plan.total_steps)),
        )
        return engine, scheduler

    # ------------------------------------------------------------------ reference
    def build_reference(self) -> Reference | None:
        """The reference for every mode but worker_precompute, whose table needs `resume` first."""
        mode = self.cfg.reference
        if mode == "separate":
            return SeparateReference(self._separate_engine(), autocast_bf16=self.cfg.precision == "bf16-mixed")
        if mode == "adapter":
            return AdapterReference(self.engine)
        if mode == "precomputed":
            return PrecomputedReference(self.device)
        return None

    def _separate_engine(self):
        """A frozen copy of the initial policy; under ZeRO-3 an engine without optimizer, so its
        weights stay partitioned from load on."""
        import deepspeed

        hf_ds = self._zero3_loading(self.ref_ds_cfg)
        ref_model = PolicyLogProbs(load_model(self.spec.model_path, self.dtype, self.spec.trust_remote_code),
                                   packed=self.cfg.packing)
        del hf_ds  # later loads must not partition
        ref_model.requires_grad_(False)
        if self.cfg.zero_stage == 3:
            ref_engine, *_ = deepspeed.initialize(model=ref_model, config=self.ref_ds_cfg)
        else:  # stages 0-2 replicate weights anyway: a plain frozen copy
            ref_engine = ref_model.to(self.device)
        ref_engine.eval()  # DeepSpeedEngine.eval() returns None, unlike nn.Module's
        return ref_engine

    def _worker_reference(self) -> TableReference:
        t0 = time.perf_counter()
        cfg = self.cfg
        table = reference_pass(self.engine, self.rows, self.spec.pad_token_id, self.device, self.rank, self.world,
                               cfg.micro_batch_size, cfg.grad_accum, cfg.seed, packed=cfg.packing)
        self.ref_pass_s = time.perf_counter() - t0
        if self.rank == 0:
            log.info("[train] reference pass: %d pairs in %.1fs", len(self.rows), self.ref_pass_s)
        return TableReference(table, self.device)

    # ------------------------------------------------------------------ resume
    def resume(self) -> int:
        """-> the step to continue from (0 without a checkpoint)."""
        import ray.train

        self.ref_pass_s, step = 0.0, 0
        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                step = self._restore(Path(d))
            if self.rank == 0:
                log.info("[train] resumed at step %d/%d", step, self.plan.total_steps)
        if self.cfg.reference == "worker_precompute" and self.reference is None:
            self.reference = self._worker_reference()
        return step

    def _restore(self, d: Path) -> int:
        state = resumable_state(d, self.world)
        self.engine.load_checkpoint(str(d), tag=CKPT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
        if self.cfg.reference == "worker_precompute":  # the initial policy's, not the trained one's
            self.reference = TableReference(load_reference_table(d), self.device)
        load_rng_state(d, self.rank)
        return int(state["step"])

    # ------------------------------------------------------------------ train
    def train(self) -> None:
        self.engine.train()
        self.t_last = time.time()
        while self.step < self.plan.total_steps:
            epoch, in_epoch = divmod(self.step, self.plan.steps_per_epoch)
            batch_idx = epoch_batches(self.lengths, self.plan.global_batch, self.cfg.seed, epoch)[in_epoch]
            agg = self.train_step(batch_idx)
            self.step += 1
            self.save_or_report(self.log_metrics(agg, epoch))

    def train_step(self, batch_idx: list[int]) -> dict:
        """One optimizer step over this rank's micro-batches -> its (unreduced) metrics."""
        cfg = self.cfg
        agg: dict[str, float] = {"tokens": 0, "time/forward_s": 0.0, "time/backward_s": 0.0, "time/optimizer_s": 0.0}
        ref_gap = 0.0
        for micro_idx in micro_batches(batch_idx, self.rank, cfg.micro_batch_size, cfg.grad_accum):
            micro = [self.rows[i] for i in micro_idx]
            b = to_device(collate(micro, self.spec.pad_token_id, cfg.packing), self.device)
            agg["tokens"] += batch_tokens(b)
            t0 = time.perf_counter()
            logps, ntok = self.engine(**b)
            ref = self.reference.logps(micro_idx, micro, b)
            if self.step == 0:  # no update yet (DeepSpeed steps at the last micro-batch): policy == reference
                ref_gap = max(ref_gap, check_step1_reference(logps, ref, cfg.reference))
            loss, pref = self.loss(logps, ref, ntok, len(micro))
            t1 = time.perf_counter()
            self.engine.backward(loss)
            t2 = time.perf_counter()
            self.engine.step()
            t3 = time.perf_counter()
            agg["time/forward_s"] += t1 - t0
            agg["time/backward_s"] += t2 - t1
            agg["time/optimizer_s"] += t3 - t2
            for k, v in pref.items():
                agg[k] = agg.get(k, 0.0) + v / cfg.grad_accum
        grad_norm = self.engine.get_global_grad_norm()  # before clipping; None if DeepSpeed did not compute it
        if grad_norm is not None:
            agg["grad_norm"] = float(grad_norm)
        if self.step == 0:  # each rank's largest |policy - reference| log-prob before any update
            agg["reference/step1_max_abs_diff"] = ref_gap  # (averaged over ranks): 0 when computed the same way
        return agg

    def loss(self, logps: torch.Tensor, ref: torch.Tensor, ntok: torch.Tensor, B: int):
        """DPO loss (+ `nll_weight` x the chosen responses' mean token NLL) of one micro-batch.
        logps, ref, ntok: [2B] (chosen then rejected) -> (scalar loss, TRL-named metrics)."""
        cfg = self.cfg
        pol, ref = logps.float(), ref.float()
        if cfg.loss_type == "ipo":  # IPO works on length-averaged log-probs
            pol, ref = pol / ntok.clamp(min=1), ref / ntok.clamp(min=1)
        losses, cr, rr = self.loss_fn(pol[:B], pol[B:], ref[:B], ref[B:])
        loss = losses.mean()
        if cfg.nll_weight:
            loss = loss + cfg.nll_weight * (-(logps[:B] / ntok[:B].clamp(min=1))).mean()
        return loss, preference_metrics(losses, cr, rr, pol[:B], pol[B:])

    def log_metrics(self, agg: dict, epoch: int) -> dict:
        """Average over ranks (one all-reduce), add the step's context, append to metrics.jsonl."""
        now = time.time()
        metrics = _reduce_mean(agg, self.world)
        tok_total = metrics.pop("tokens") * self.world
        if self.ref_pass_s:  # the first step after the workers' reference pass
            metrics["time/reference_pass_s"], self.ref_pass_s = self.ref_pass_s, 0.0
        metrics.update(step=self.step, epoch=epoch, learning_rate=self.scheduler.get_last_lr()[0],
                       **{"memory/param_partition_bytes": self.partition_bytes},
                       tokens_per_s=tok_total / max(now - self.t_last, 1e-9), tokens=tok_total,
                       **{"time/step_s": now - self.t_last})  # this step alone: the ETA's rate
        self.t_last = now
        self.tracker.log_metrics(metrics, self.step)
        if self.rank == 0 and self.spec.metrics_path:
            append_line(self.spec.metrics_path, json.dumps(metrics))  # whole lines only
        return metrics

    def save_or_report(self, metrics: dict) -> None:
        """Every `checkpoint_every` steps and at the end: a checkpoint from every rank with the
        metrics; otherwise the metrics alone."""
        import ray.train

        every, step = self.cfg.checkpoint_every, self.step
        if not ((every and step % every == 0) or step == self.plan.total_steps):
            ray.train.report(metrics)
            return
        table = self.reference.table if isinstance(self.reference, TableReference) else None
        state = {"step": step, "total_steps": self.plan.total_steps, "world_size": self.world,
                 "dropped_pairs_per_epoch": dropped_per_epoch(len(self.rows), self.plan.global_batch)}
        with tempfile.TemporaryDirectory() as tmp:
            write_checkpoint_files(Path(tmp), self.engine, self.rank, state, table)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if self.rank == 0:
            crash_once("train_step", step)  # the resume tests' fault hook (CST_RAY_FAULTS)

    # ------------------------------------------------------------------ export
    def export(self) -> None:
        import torch.distributed as dist

        if not self.spec.export_dir:
            return
        t0 = time.time()
        if self.cfg.zero_stage == 3:
            state = self.engine._zero3_consolidated_16bit_state_dict()
        else:
            state = self.engine.module.state_dict() if self.rank == 0 else None
        if self.rank == 0:
            export_model(state, self.spec)
            self.tracker.log_export(self.spec.export_dir)
            if self.spec.metrics_path:  # summary.md's stage table
                Path(self.spec.metrics_path).with_name("export.json").write_text(
                    json.dumps({"export_s": round(time.time() - t0, 2), "precision": self.cfg.precision}) + "\n")
        dist.barrier()


def _reduce_mean(values: dict, world: int) -> dict:
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return dict(zip(keys, t.tolist()))
