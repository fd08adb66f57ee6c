"""Before any work: whether the policy model can be trained as configured, from its config on the
meta device (no weights read): a head the log-prob code supports, LoRA targets among its modules,
and DeepSpeed's ZeRO-3 estimate of the model-state memory per GPU against the GPU's memory.
`check_inputs` (stages/preflight.py) runs `check_training` for the commands that train."""

from __future__ import annotations

import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import ConfigError
from cst_ray.models.inspect import check_lora_targets, meta_model, zero3_memory_estimate
from cst_ray.models.resolve import local_model_folder

log = logging.getLogger(__name__)


def check_training(cfg: CSTConfig, models: dict) -> dict:
    """The policy's LoRA targets against its modules, and DeepSpeed's ZeRO-3 estimate of the
    model-state memory per GPU, from the model's config on the meta device (no weights read).
    A hub model or an alias not built yet is checked when the train stage loads it."""
    from cst_ray.training.logprobs import check_head_supported  # noqa: PLC0415 (imports torch; `check` stays light)

    folder = local_model_folder(cfg.model)
    if folder is None:
        return {"training": "model not on this machine yet: checked when it is loaded"}
    model = meta_model(folder, cfg.model.trust_remote_code)
    try:
        check_head_supported(model)
    except ValueError as e:
        raise ConfigError(str(e), key="model.name_or_path") from None
    if cfg.train.lora.enabled:
        check_lora_targets(model, cfg.train.lora.target_modules, cfg.model.name_or_path)
    est = zero3_memory_estimate(model, cfg.train.num_workers)
    line = (f"ZeRO-3 model states (DeepSpeed's estimate: parameters, gradients, Adam; activations come on top): "
            f"{est['parameters'] / 1e6:.0f}M parameters over {est['workers']} workers -> "
            f"{est['per_gpu_gib']:.2f} GiB per GPU")
    limit, where = _device_memory_gib(cfg)
    if limit and est["per_gpu_gib"] > limit:
        line += f": more than the {limit:.1f} GiB {where}; raise train.num_workers or use LoRA"
    return {"training": {"zero3_estimate": est, "device_memory_gib": limit, "line": line,
                         "over": bool(limit and est["per_gpu_gib"] > limit)}}


def log_training_estimate(summary: dict) -> None:
    """The ZeRO-3 line of the checks, on the console after the precision line (a warning when over)."""
    t = summary.get("training")
    if isinstance(t, dict) and t.get("line"):
        (log.warning if t["over"] else log.info)(t["line"])


def _device_memory_gib(cfg: CSTConfig) -> tuple[float, str]:
    """The memory one training GPU has: `train.gpu_memory_gb`, else the first visible GPU's."""
    if cfg.train.gpu_memory_gb:
        return float(cfg.train.gpu_memory_gb), "of train.gpu_memory_gb"
    if cfg.train.use_gpu:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30, "this machine's GPU has"
    return 0.0, ""
