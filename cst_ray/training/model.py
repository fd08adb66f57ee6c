"""Loading the policy for training: dtype, fp32 buffers under ZeRO-3, LoRA, partition sizes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch  # noqa: TID253 (runs only in training workers)

from cst_ray.config.schema import LoraConfig

log = logging.getLogger(__name__)


def fp32_buffer_names(model_path: str, dtype: torch.dtype, trust_remote_code: bool) -> list[str]:
    """The floating buffers that a plain `from_pretrained(dtype=dtype)` keeps in fp32, such as
    RoPE's `inv_freq`, plus those the model names for fp32 (DeepSpeed's "auto").

    Under ZeRO-3, `zero.Init` creates every floating tensor of a module's `__init__` in the
    training dtype, buffers included, so in bf16 the policy got bf16 RoPE frequencies (0.5625
    for 0.5623...): a different model from the one HF, vLLM, TRL and the Ray Data reference
    stage load, with position errors growing along the sequence. A `train.reference:
    precomputed` reference then disagreed with the policy at step 1 (0.0131 nats for the tiny
    test model, first loss 0.69262). Passed to DeepSpeed as `data_types.keep_in_fp32_modules`,
    these buffers stay fp32 and transformers fills them with the values a plain load computes.
    The model is built on the meta device (no memory, no weights) to read the dtypes."""
    if dtype == torch.float32:
        return []
    try:
        from deepspeed.runtime.keep_in_fp32 import (
            KEEP_IN_FP32_AUTO,
            keep_in_fp32_pattern,
        )
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
        auto = keep_in_fp32_pattern(skeleton, KEEP_IN_FP32_AUTO, dtype)
        return sorted(name for name, buf in skeleton.named_buffers()
                      if buf is not None and buf.is_floating_point()
                      and (buf.dtype == torch.float32 or (auto is not None and auto.search(name))))
    except Exception as e:  # a model that cannot be built on the meta device: DeepSpeed's default
        log.warning("could not list the fp32 buffers of %s (%s: %s); ZeRO-3 may load them in %s",
                    model_path, type(e).__name__, e, dtype)
        return []


def load_model(model_path: str, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=trust_remote_code)


def apply_lora(model, lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = "all-linear" if list(lora.target_modules) == ["all-linear"] else list(lora.target_modules)
    pcfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, pcfg)


def hidden_size(model_path: str) -> int:
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return 0
    c = json.loads(cfg_file.read_text())
    return int(c.get("hidden_size") or c.get("text_config", {}).get("hidden_size") or 0)


def param_partition_bytes(module: torch.nn.Module) -> int:
    """Bytes of parameters this rank holds (its ZeRO-3 partition, or the full tensors)."""
    total = 0
    for p in module.parameters():
        t = getattr(p, "ds_tensor", None)
        t = p if t is None else t
        total += t.numel() * t.element_size()
    return total
