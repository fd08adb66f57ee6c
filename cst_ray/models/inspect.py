"""A model's shape without its weights: built on PyTorch's meta device from its config, for the
checks that run before any work (LoRA targets that match nothing, ZeRO-3 memory per GPU)."""

from __future__ import annotations

import contextlib
import os
import sys

from cst_ray.core.errors import ConfigError

ALL_LINEAR = "all-linear"  # PEFT: every linear layer but the output head


def meta_model(model_dir: str, trust_remote_code: bool = False):
    """The model class `from_pretrained` would build, with every tensor on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def linear_module_names(model) -> list[str]:
    """Leaf names of the linear layers (nn.Linear, GPT-2's Conv1D), output head excluded."""
    import torch

    head = model.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
             if (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D") and m is not head}
    return sorted(names)


def check_lora_targets(model, targets: list[str], model_name: str, key: str = "train.lora.target_modules") -> None:
    """Every name in `targets` must match a module of `model` (PEFT matches the last name part)."""
    if list(targets) == [ALL_LINEAR]:
        return
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unmatched = [t for t in targets if t not in leaves]
    if unmatched:
        raise ConfigError(f"{unmatched} match no module of {model_name}; its linear layers are "
                          f"{linear_module_names(model)}; or write [{ALL_LINEAR}]", key=key)


def parameter_counts(model) -> tuple[int, int]:
    """(total parameters, tied ones counted once; the most in one module's own parameters)."""
    total = sum({id(p): p.numel() for p in model.parameters()}.values())
    largest = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()), default=0)
    return total, largest


def zero3_memory_estimate(model, num_gpus: int) -> dict:
    """DeepSpeed's own estimate of ZeRO-3 model-state memory (parameters, gradients, Adam states;
    no offload) per GPU for `num_gpus` workers on one node. Activations come on top."""
    estimate_zero3_model_states_mem_needs = _deepspeed_estimator()

    total, largest = parameter_counts(model)
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(total, largest, num_gpus_per_node=max(1, num_gpus),
                                                        num_nodes=1, cpu_offload=False, cpu_offload_params=False)
    return {"parameters": total, "largest_layer_parameters": largest, "workers": max(1, num_gpus),
            "per_gpu_gib": round(gpu / 2**30, 2), "cpu_gib": round(cpu / 2**30, 2)}


def _deepspeed_estimator():
    """DeepSpeed's estimator, imported quietly: its import logs to stdout (which holds a command's
    result) and, on a machine without CUDA, warns that it falls back to the CPU accelerator."""
    import torch

    quiet = not torch.cuda.is_available() and "DS_ACCELERATOR" not in os.environ
    if quiet:  # only for this import in this process; the training workers choose their own
        os.environ["DS_ACCELERATOR"] = "cpu"
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    finally:
        if quiet:
            os.environ.pop("DS_ACCELERATOR", None)
    return estimate_zero3_model_states_mem_needs
