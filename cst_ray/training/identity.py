"""The identity of a training run, kept beside its checkpoints so that no run resumes another's.

`<train.storage_path or the default>/ray_train/cst_identity.json` holds three sha256 digests:
the train settings that shape the weights (not where checkpoints go, how many are kept or how
often, nor tracking), the pairs trained on, and the base model's files. A run that finds the file
with other digests stops before any worker starts, naming what differs; Ray Train would
otherwise resume the other run's latest checkpoint (or export its finished weights as this one's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from cst_ray.config.schema import TrainConfig
from cst_ray.core import storage
from cst_ray.core.errors import StageError
from cst_ray.core.files import path_sha256

IDENTITY_FILE = "cst_identity.json"
# settings that do not change the trained weights: where checkpoints go and how they are kept
_NEUTRAL = ("storage_path", "keep_checkpoints", "max_failures", "checkpoint_every", "tracking", "tracking_uri",
            "tracking_experiment", "threads_per_worker", "cpus_per_worker", "gpu_memory_gb")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_digest(model_path: str) -> str:
    """sha256 over the model folder's weight, config and tokenizer files (names and bytes)."""
    if not Path(model_path).is_dir():
        return _sha(model_path)  # a hub id with its revision: the name is the identity
    return path_sha256(model_path, _WEIGHT_SUFFIXES)


def run_identity(train: TrainConfig, pairs: list[dict], model_path: str) -> dict[str, str]:
    settings = {k: v for k, v in dataclasses.asdict(train).items() if k not in _NEUTRAL}
    return {"train settings": _sha(json.dumps(settings, sort_keys=True, default=str)),
            "pairs": _sha(json.dumps(pairs, sort_keys=True, default=str)),
            "base model": model_digest(model_path)}


def claim_storage(run_folder: str, identity: dict[str, str]) -> None:
    """Record `identity` in the checkpoint folder, or stop if it holds another run's checkpoints.
    A folder without checkpoints (a run that stopped before its first) is simply claimed."""
    location = storage.join(run_folder, IDENTITY_FILE)
    found = storage.read_text(location)
    has_checkpoints = any(n.startswith("checkpoint_") for n in storage.list_names(run_folder))
    if found is None and has_checkpoints:
        raise StageError(f"{run_folder} holds checkpoints without a run identity (an older cst-ray, or another "
                         f"tool): refusing to resume them; set train.storage_path to a new folder or remove it")
    differ = [k for k in identity if json.loads(found).get(k) != identity[k]] if found else []
    if differ and has_checkpoints:
        raise StageError(f"{run_folder} holds the checkpoints of another run (it differs in: {', '.join(differ)}); "
                         f"refusing to resume them: set train.storage_path to a new folder, or remove that one")
    if found is None or differ:
        storage.write_text(location, json.dumps(identity, indent=2) + "\n")
