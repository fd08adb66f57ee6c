"""The DPO reference: one class per `train.reference` mode behind one interface, and the
workers' own reference pass (`worker_precompute`).

    separate           a frozen copy of the initial policy, its own (ZeRO-3) engine
    adapter            the policy with its LoRA adapter disabled
    precomputed        log-probs stored in the pairs by the Ray Data stage (`cst-ray pairs`)
    worker_precompute  log-probs the workers compute from the policy before its first update

`Reference.logps(micro_idx, micro_rows, batch)` -> [2B] (chosen then rejected) for a micro-batch.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import torch  # noqa: TID253 (runs only in training workers)

from cst_ray.training.batching import collate, epoch_batches, micro_batches, pair_length, to_device

log = logging.getLogger(__name__)


class Reference(ABC):
    """The interface: log-probs of a micro-batch's chosen and rejected responses -> [2B]."""

    mode = ""

    @abstractmethod
    def logps(self, micro_idx: list[int], micro_rows: list[dict], batch: dict) -> torch.Tensor:
        """micro_idx: the rows' indices in the training set; batch: the collated micro-batch."""


class SeparateReference(Reference):
    mode = "separate"

    def __init__(self, engine, autocast_bf16: bool = False):
        self.engine = engine  # frozen, eval mode
        # a plain module (ZeRO stages 0-2) gets no autocast from DeepSpeed: bf16-mixed's is set here
        self.autocast_bf16 = autocast_bf16

    def logps(self, micro_idx, micro_rows, batch):
        device = batch["input_ids"].device.type
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            return self.engine(**batch)[0]


class AdapterReference(Reference):
    mode = "adapter"

    def __init__(self, policy_engine):
        self.engine = policy_engine

    def logps(self, micro_idx, micro_rows, batch):
        with torch.no_grad(), self.engine.module.model.disable_adapter():
            return self.engine(**batch)[0]


class PrecomputedReference(Reference):
    mode = "precomputed"

    def __init__(self, device):
        self.device = device

    def logps(self, micro_idx, micro_rows, batch):
        return torch.tensor([r["ref_chosen_logps"] for r in micro_rows] + [r["ref_rejected_logps"] for r in micro_rows],
                            dtype=torch.float32, device=self.device)


class TableReference(Reference):
    """`worker_precompute`: a [pairs, 2] table from `reference_pass`, kept in checkpoints."""

    mode = "worker_precompute"

    def __init__(self, table: torch.Tensor, device):
        self.table, self.device = table, device

    def logps(self, micro_idx, micro_rows, batch):
        return torch.cat([self.table[micro_idx, 0], self.table[micro_idx, 1]]).to(self.device)


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
