"""`WorkerSpec`: everything the driver hands a training worker, typed and frozen.

Ray Train passes it inside `train_loop_config` ({"spec": WorkerSpec}); the worker reads nothing
else. The step count is planned once, here (`plan_steps`), for the driver and the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cst_ray.config.schema import TrainConfig


@dataclass(frozen=True)
class ModelCardInfo:
    """What the exported model card says about the run."""

    base_name: str
    method: str
    s1: str
    s0: str
    data_note: str = ""
    sources: tuple[str, ...] = ()  # the prompt sources trained on (builtin names, for `datasets`)
    # with `policies`: (name, first wording, what it answers and refuses) per policy; the card's
    # table shows these instead of s1 / s0
    policies: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class StepPlan:
    global_batch: int  # pairs per optimizer step, over all workers
    steps_per_epoch: int
    total_steps: int


def plan_steps(n_pairs: int, train: TrainConfig) -> StepPlan:
    global_batch = train.num_workers * train.micro_batch_size * train.grad_accum
    steps_per_epoch = n_pairs // global_batch
    return StepPlan(global_batch, steps_per_epoch, train.max_steps or steps_per_epoch * train.epochs)


@dataclass(frozen=True)
class WorkerSpec:
    train: TrainConfig
    model_path: str
    trust_remote_code: bool
    pad_token_id: int
    data_ref: Any  # a Ray ObjectRef to the tokenized rows (the rows themselves in unit tests)
    n_pairs: int
    plan: StepPlan
    metrics_path: str = ""  # rank 0 appends one JSON line per step
    export_dir: str = ""  # merged HF export; "" = none
    card: ModelCardInfo | None = None
    tracking_uri: str = ""  # resolved by the driver when train.tracking is on
    run_name: str = ""  # the tracking run's name: <run_dir name>-<method>
