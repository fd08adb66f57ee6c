import pytest

from cst_ray.config.load import load_config, parse_override
from cst_ray.core.errors import ConfigError


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


@pytest.mark.parametrize("override, key", [
    ("train.lr=-1", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.micro_batch_size=0", "train.micro_batch_size"),
    ("train.epochs=0", "train.epochs"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.max_steps=-3", "train.max_steps"),
    ("train.nll_weight=-0.5", "train.nll_weight"),
    ("prompts.s0=You are a helpful yet harmless assistant that avoids generating illegal or harmful content.",
     "prompts.s0"),
    ("generation.critic.revision_samples=0", "generation.critic.revision_samples"),
    ("generation.critique.y0_samples=0", "generation.critique.y0_samples"),
    ("eval.aims.s1_min=1.5", "eval.aims.s1_min"),
    ("data.benign_sources=[nq_open]", "data.benign_sources"),
    ("pairs.reference_dtype=fp8", "pairs.reference_dtype"),
])
def test_ranges_and_cross_field_rules_fail_before_any_work(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_default_config_uses_a_critic_and_benign_anchor():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    assert cfg.model.name_or_path == "smollm2-135m-instruct"
    assert cfg.generation.critic.name_or_path == "qwen2.5-coder-0.5b-instruct"
    assert cfg.data.benign_sources == ["rho_benign", "trivia_qa", "boolq"] and cfg.pairs.s0_augment
    assert cfg.eval.benign_source not in cfg.data.benign_sources
    assert not set(cfg.pairs.s0_augment) & set(cfg.prompts.s0_unseen)
    smoke = load_config(Path(__file__).resolve().parents[1] / "configs" / "smollm2.yaml")
    assert smoke.generation.critic.name_or_path == ""  # the paper's self-critique


def test_reference_dtype_auto_follows_training_precision():
    from cst_ray.stages.reference import reference_dtype

    assert reference_dtype(load_config(None, ["train.precision=bf16"])) == "bfloat16"
    assert reference_dtype(load_config(None, ["train.precision=fp32"])) == "float32"
    assert reference_dtype(load_config(None, ["pairs.reference_dtype=float32", "train.precision=bf16"])) == "float32"


@pytest.mark.parametrize("key,value", [
    ("run_uri", "s3://AKIAFAKE:fakeSECRET@bucket/run"),
    ("train.storage_path", "https://host/ckpt?X-Amz-Credential=AKIA%2Ffake&X-Amz-Signature=abc"),
    ("train.tracking_uri", "http://user:pw@mlflow.example:5000"),
    ("data.source", "https://example.org/prompts.jsonl?token=abc"),
    # issue 25: a bare token before @, GCS signed URLs, AWS SigV2, OAuth tokens, API keys
    ("train.storage_path", "https://ghp_FAKETOKEN@host/ckpt"),
    ("train.storage_path", "https://storage.googleapis.com/b/o?X-Goog-Credential=fake&X-Goog-Signature=abc"),
    ("run_uri", "https://bucket.s3.amazonaws.com/run?AWSAccessKeyId=AKIAFAKE&Expires=1&Signature=abc"),
    ("train.tracking_uri", "https://mlflow.example/api?access_token=abc"),
    ("data.source", "https://example.org/prompts.jsonl?api_key=abc"),
])
def test_credentials_in_uris_are_refused_naming_the_key(key, value):
    from cst_ray.core.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={value}"])
    assert key in str(e.value) and "credentials" in str(e.value)
    assert value not in str(e.value)  # the error does not repeat the secret


def test_uris_without_credentials_pass():
    cfg = load_config(None, ["run_uri=s3://bucket/run", "train.tracking_uri=http://mlflow.example:5000"])
    assert cfg.run_uri == "s3://bucket/run"


def test_an_expanded_yaml_alias_bomb_is_not_repeated_in_the_error(tmp_path):
    """10^5 leaves behind one key: the error names the key in one short line."""
    from cst_ray.core.errors import ConfigError

    levels = ["&a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcd", "bcde"):
        levels.append(f"&{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("train:\n  lr: [" + ", ".join(levels) + "]\n")  # the last level alone: 10^5 leaves
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "train.lr" in str(e.value) and len(str(e.value)) < 400


def test_non_finite_numbers_are_refused():
    from cst_ray.core.errors import ConfigError

    for override in ("train.beta=.inf", "train.nll_weight=.nan", "train.lr=-.inf"):
        with pytest.raises(ConfigError, match="finite"):
            load_config(None, [override])


def test_max_completion_length_below_min_response_tokens_is_refused():
    from cst_ray.core.errors import ConfigError

    assert load_config(None, ["train.max_completion_length=48"]).train.max_completion_length == 48
    with pytest.raises(ConfigError, match="train.max_completion_length") as e:
        load_config(None, ["train.max_completion_length=8"])
    assert "train.min_response_tokens (16)" in str(e.value)
    with pytest.raises(ConfigError, match="train.min_response_tokens"):
        load_config(None, ["train.min_response_tokens=0", "train.max_completion_length=-4"])
