"""Export the trained policy as a merged Hugging Face safetensors folder with a model card."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cst_ray.core.storage import replace_dir
from cst_ray.models.resolve import PROVENANCE_FILE
from cst_ray.training.model import apply_lora
from cst_ray.training.model_card import model_card_text
from cst_ray.training.spec import WorkerSpec


def export_model(state_dict: dict, spec: WorkerSpec) -> None:
    """Rank 0 only: load the gathered weights into a fresh model, merge LoRA, save, upload."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # a plain, unpartitioned model on rank 0
    sd = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
    # the dtype the weights were gathered in (ZeRO-3's 16-bit consolidation: bf16 for a bf16 run,
    # fp32 otherwise): a wider model would add memory at the run's end and no information
    dtype = next((v.dtype for v in sd.values() if v.is_floating_point()), torch.float32)
    cfg, card = spec.train, spec.card
    base = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype, trust_remote_code=spec.trust_remote_code)
    if cfg.lora.enabled:
        peft_model = apply_lora(base, cfg.lora)
        missing, unexpected = peft_model.load_state_dict(sd, strict=False)
        if unexpected or any("lora_" in k for k in missing):
            raise RuntimeError(f"LoRA export mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
        model = peft_model.merge_and_unload()
    else:
        missing, unexpected = base.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"export mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
        model = base
    tok = AutoTokenizer.from_pretrained(spec.model_path)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        provenance = Path(spec.model_path) / PROVENANCE_FILE  # builtin aliases built from third-party packages
        text = model_card_text(card, loss=cfg.loss_type, beta=cfg.beta, steps=spec.plan.total_steps, pairs=spec.n_pairs,
                               lora=f", LoRA r={cfg.lora.r}" if cfg.lora.enabled else "",
                               provenance=provenance.read_text() if provenance.is_file() else "")
        (Path(tmp) / "README.md").write_text(text)
        replace_dir(tmp, spec.export_dir)  # whole: no file of an older export left beside it
