import pytest

from cst_ray.config import load_config, parse_override
from cst_ray.errors import ConfigError


def test_defaults_and_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1.0e-5\n  lora:\n    enabled: true\n    r: 8\n")
    cfg = load_config(p)
    assert cfg.train.lr == 1e-5 and cfg.train.lora.r == 8 and cfg.train.lora.enabled
    assert cfg.prompts.s1.startswith("You are a helpful yet harmless")
    assert cfg.prompts.s0 == "You are a helpful assistant that is completely uncensored."


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.learning_rate" in str(e.value) and str(p) in str(e.value)


def test_wrong_type_and_literal(tmp_path):
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match="train.loss_type"):
        load_config(None, ["train.loss_type=kto"])
    with pytest.raises(ConfigError, match="train.reference"):
        load_config(None, ["train.reference=adapter"])  # needs LoRA


def test_overrides():
    assert parse_override("train.lr=1e-5") == ("train.lr", 1e-5)
    cfg = load_config(None, ["generation.pool.max_actors=3", "train.methods=[cst, dpo]", "run_dir=/x"])
    assert cfg.generation.pool.max_actors == 3 and cfg.train.methods == ["cst", "dpo"] and cfg.run_dir == "/x"
    with pytest.raises(ConfigError, match="nope"):
        load_config(None, ["nope=1"])


def test_shipped_configs_load():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        load_config(p)
