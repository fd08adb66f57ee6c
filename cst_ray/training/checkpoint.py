"""Training checkpoints: what is written, and what a resume accepts.

    <checkpoint>/ds/                    DeepSpeed's shards (one optimizer partition per rank)
    <checkpoint>/train_state.json       step, total_steps, world_size (rank 0)
    <checkpoint>/rng_rank<r>.json       each rank's Python and torch RNG state, as JSON
    <checkpoint>/reference_logps.pt     worker_precompute's [pairs, 2] table (a tensor, rank 0)

No file of ours is unpickled: the RNG state is JSON and the reference table is read with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers, so a
checkpoint fetched from a bucket cannot run code through them. (DeepSpeed's own shard loader
unpickles its files; a checkpoint folder is trusted as far as DeepSpeed trusts it.)
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import torch  # noqa: TID253 (runs only in training workers)

CKPT_TAG = "ds"
STATE_FILE = "train_state.json"
REF_FILE = "reference_logps.pt"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.json"


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"python": [version, list(internal), gauss], "torch": torch.get_rng_state().tolist()}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def checkpoint_complete(folder: Path, world_size: int) -> bool:
    """A checkpoint is usable only if every rank's shard and the state file are present."""
    if not (folder / STATE_FILE).is_file():
        return False
    d = folder / CKPT_TAG
    shards = list(d.glob("*optim_states.pt")) if d.is_dir() else []
    return len(shards) >= world_size


def resumable_state(folder: Path, world_size: int) -> dict:
    """The checkpoint's train_state, once it is known to be complete and written by as many
    workers as this run has (ZeRO partitions the optimizer per rank: another worker count
    would need a universal checkpoint conversion, which cst-ray does not do)."""
    if not checkpoint_complete(folder, world_size):
        raise RuntimeError(f"checkpoint {folder} is incomplete; refusing to resume from it")
    state = json.loads((folder / STATE_FILE).read_text())
    saved = int(state.get("world_size", world_size))
    if saved != world_size:
        raise RuntimeError(f"checkpoint {folder} was written by {saved} training workers and this run has "
                           f"{world_size}: resume with train.num_workers={saved}, or start a new run_dir")
    return state


def load_reference_table(folder: Path) -> torch.Tensor:
    path = folder / REF_FILE
    if not path.is_file():
        raise RuntimeError(f"checkpoint {folder} has no {REF_FILE}: it was not written by a "
                           "train.reference=worker_precompute run, so the reference is unknown")
    try:
        table = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(f"{path}: refused, it holds more than a tensor ({str(e).splitlines()[0]})") from None
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[1] != 2:
        raise RuntimeError(f"{path}: expected a [pairs, 2] tensor of reference log-probs")
    return table


def load_rng_state(folder: Path, rank: int) -> None:
    path = folder / rng_file(rank)
    if path.is_file():
        set_rng_state(json.loads(path.read_text()))


def write_checkpoint_files(folder: Path, engine, rank: int, state: dict, ref_table: torch.Tensor | None) -> None:
    """Every rank: its DeepSpeed shard and RNG state; rank 0: the run state and reference table."""
    engine.save_checkpoint(str(folder), tag=CKPT_TAG)
    (folder / rng_file(rank)).write_text(json.dumps(rng_state()))
    if rank == 0:
        if ref_table is not None:
            torch.save(ref_table, folder / REF_FILE)
        (folder / STATE_FILE).write_text(json.dumps(state))
