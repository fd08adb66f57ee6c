"""Before any work, from the model's config alone (meta device): LoRA targets that match no
module are named, and DeepSpeed's ZeRO-3 estimate of memory per GPU is printed (issue 30)."""

import json

import pytest
from conftest import run_cli

from cst_ray.core.errors import ConfigError
from cst_ray.models.inspect import (
    check_lora_targets,
    linear_module_names,
    meta_model,
    parameter_counts,
    zero3_memory_estimate,
)

NEOX = {"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000, "max_position_embeddings": 128}


def _folder(tmp_path, config: dict):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_lora_targets_are_checked_against_the_family_names(tmp_path, tiny_model_path):
    llama = meta_model(tiny_model_path)
    check_lora_targets(llama, ["q_proj", "v_proj"], "tiny")
    check_lora_targets(llama, ["all-linear"], "tiny")
    neox = meta_model(_folder(tmp_path, NEOX))
    assert "query_key_value" in linear_module_names(neox) and "embed_out" not in linear_module_names(neox)
    check_lora_targets(neox, ["query_key_value", "dense_h_to_4h"], "neox")
    with pytest.raises(ConfigError) as e:
        check_lora_targets(neox, ["q_proj", "dense"], "neox")  # Llama's names on a GPT-NeoX model
    msg = str(e.value)
    assert "key train.lora.target_modules" in msg and "['q_proj'] match no module of neox" in msg
    assert "query_key_value" in msg and "[all-linear]" in msg


def test_zero3_estimate_follows_the_parameter_count_and_workers(tiny_model_path):
    import torch
    from transformers import AutoModelForCausalLM

    meta = meta_model(tiny_model_path)
    real = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    assert parameter_counts(meta) == parameter_counts(real)
    one, two = zero3_memory_estimate(meta, 1), zero3_memory_estimate(meta, 2)
    assert one["parameters"] == parameter_counts(real)[0]
    assert two["per_gpu_gib"] < one["per_gpu_gib"]  # ZeRO-3 splits the states over the workers


def test_check_prints_the_estimate_and_refuses_bad_targets(tiny_model_path, tmp_path):
    base = ["--config", "configs/tiny.yaml", f"run_dir={tmp_path / 'run'}", f"model.name_or_path={tiny_model_path}"]
    ok = run_cli(["check", *base, "train.gpu_memory_gb=0.000001"], timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "ZeRO-3 model states (DeepSpeed's estimate" in ok.stderr and "more than the 0.0 GiB" in ok.stderr
    bad = run_cli(["check", *base, "train.lora.enabled=true", "train.lora.target_modules=[fc1,q_proj]"], timeout=300)
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and "['fc1'] match no module" in lines[-1] and len(
        [ln for ln in lines if ln.startswith("cst-ray: error")]) == 1
