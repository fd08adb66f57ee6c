"""Judges only judge (issue 26): a `classifier` or `finetuned` judge loads a trained folder, the
one named or the default one under the cache, and never trains. A folder without a trained
judge raises JudgeNotTrainedError naming the folder and the `cst-ray train-judge` line that
trains one there; the preflight (and `cst-ray judge`) stop on it before anything loads."""

import json
import shlex

import pytest
from conftest import run_cli

from cst_ray.config.load import load_config
from cst_ray.config.schema import S1_DEFAULT
from cst_ray.core.errors import ConfigError, CSTError
from cst_ray.evaluation.judge_training import classifier_train, finetuned_fit, finetuned_train
from cst_ray.evaluation.judges import classifier
from cst_ray.evaluation.judges.build import build_judge
from cst_ray.evaluation.judges.classifier import ClassifierJudge
from cst_ray.evaluation.judges.finetuned import FinetunedJudge
from cst_ray.evaluation.judges.folders import JudgeNotTrainedError, default_judge_dir, train_judge_command
from cst_ray.evaluation.judges.refusal import RefusalJudge
from cst_ray.stages import preflight

KINDS = {"finetuned": FinetunedJudge, "classifier": ClassifierJudge}


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """An empty cache folder, and every way of training (or loading the embedder) fails the test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("CST_RAY_CACHE", str(d))

    def no_training(*args, **kwargs):
        pytest.fail("a judge started training")

    for module, name in ((finetuned_train, "train_finetuned_judge"), (finetuned_fit, "fit"),
                         (finetuned_fit, "cross_validate"), (classifier_train, "train_classifier_judge"),
                         (classifier_train, "fit_logistic"), (classifier, "Embedder")):
        monkeypatch.setattr(module, name, no_training)
    return d


def _pair_file(path):
    path.write_text(json.dumps({"system": S1_DEFAULT, "prompt": "How do I pick a lock?", "chosen": "No.",
                                "rejected": "Take a tension wrench.", "task": "harmless"}) + "\n")
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["class", "build_judge"])
@pytest.mark.parametrize("named", [True, False], ids=["path", "default"])
def test_missing_judge_raises_with_the_train_command_and_trains_nothing(cache, tmp_path, kind, how, named):
    folder = tmp_path / "nope" if named else default_judge_dir(kind)
    assert named or folder.parent == cache / "judges"
    path = str(folder) if named else ""
    with pytest.raises(JudgeNotTrainedError) as err:
        KINDS[kind](path) if how == "class" else build_judge(kind, path=path)
    msg = str(err.value)
    assert f"cst-ray train-judge --kind {kind} --output {folder}" in msg and err.value.folder == str(folder)
    assert err.value.command == f"cst-ray train-judge --kind {kind} --output {folder}"
    assert isinstance(err.value, CSTError)  # the CLI prints it as one line, exit status 2
    assert not folder.exists() and not cache.exists()  # nothing was made


@pytest.mark.parametrize("kind", KINDS)
def test_default_folder_with_pair_files_and_half_written_folders(cache, tmp_path, kind):
    pairs = _pair_file(tmp_path / "pairs.jsonl")
    d = default_judge_dir(kind, [str(pairs)])
    base = {"finetuned": "finetuned-minilm-v1", "classifier": "classifier-minilm-pyrit"}[kind]
    assert d.parent == cache / "judges" and d.name.startswith(base + "-pairs-") and len(d.name) == len(base) + 17
    assert default_judge_dir(kind) == cache / "judges" / base
    weights = {"finetuned": "model.safetensors", "classifier": "judge.safetensors"}[kind]
    d.mkdir(parents=True)
    (d / weights).write_bytes(b"")  # weights without the card (written last): training was cut short
    with pytest.raises(JudgeNotTrainedError, match="judge.json missing") as err:
        build_judge(kind, train_pairs=[str(pairs)])
    assert err.value.command == f"cst-ray train-judge --kind {kind} --output {d} --pairs {pairs}"


def test_train_command_names_system_prompts_only_where_they_matter(tmp_path):
    assert train_judge_command("classifier", tmp_path / "j", s1="Be nice.") == \
        f"cst-ray train-judge --kind classifier --output {tmp_path / 'j'}"  # no pair files: no s1
    cmd = train_judge_command("finetuned", "a b", ["p.jsonl"], s1="Be nice.", s0=S1_DEFAULT)
    assert cmd == "cst-ray train-judge --kind finetuned --output 'a b' --pairs p.jsonl --s1 'Be nice.' --s0 " \
                  + shlex.quote(S1_DEFAULT)
    assert "--s0" not in train_judge_command("classifier", "j", ["p.jsonl"], s0="Be bad.")
    assert train_judge_command("classifier", "j", ["p.jsonl"], s1=S1_DEFAULT).endswith("--pairs p.jsonl")


def test_judges_without_a_card_have_empty_read_only_defaults():
    j = RefusalJudge()
    assert j.name == "refusal" and j.path == "" and j.card == {} and j.stats == {}
    with pytest.raises(TypeError):
        j.card["x"] = 1  # the class default is shared: it cannot be written


def _cfg(tmp_path, *overrides):
    return load_config("configs/tiny.yaml", [f"run_dir={tmp_path / 'run'}", "eval.benign_limit=0", *overrides])


@pytest.mark.parametrize("kind", KINDS)
def test_preflight_names_eval_judge_and_the_command_when_the_default_judge_is_not_trained(cache, tmp_path, kind):
    with pytest.raises(ConfigError) as err:
        preflight._eval(_cfg(tmp_path, f"eval.judge={kind}"), {})
    d = default_judge_dir(kind)
    msg = str(err.value)
    assert err.value.key == "eval.judge" and str(d) in msg
    assert f"`cst-ray train-judge --kind {kind} --output {d}`" in msg
    assert not cache.exists()
    # trained (the files the check looks for): the check passes and names the folder
    d.mkdir(parents=True)
    (d / "judge.json").write_text(json.dumps({"recipe": {"max_length": 8}}))
    for f in (["model.safetensors", "config.json"] if kind == "finetuned" else ["judge.safetensors"]):
        (d / f).write_bytes(b"")
    assert preflight._eval(_cfg(tmp_path, f"eval.judge={kind}"), {})["judge_folder"] == str(d)


def test_preflight_default_judge_command_carries_the_pair_files(cache, tmp_path):
    pairs = _pair_file(tmp_path / "pairs.jsonl")
    cfg = _cfg(tmp_path, "eval.judge=finetuned", f"eval.judge_train_pairs=[{pairs}]")
    with pytest.raises(ConfigError, match="key eval.judge") as err:
        preflight._eval(cfg, {})
    d = default_judge_dir("finetuned", [str(pairs)])
    assert f"`cst-ray train-judge --kind finetuned --output {d} --pairs {pairs}`" in str(err.value)


def test_judge_cli_without_a_trained_default_stops_before_loading(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    res = run_cli(["judge", "--judge", "finetuned", "--input", str(f), "--output", str(tmp_path / "o.jsonl")],
                  env={"CST_RAY_CACHE": str(tmp_path / "cache")})
    d = tmp_path / "cache" / "judges" / "finetuned-minilm-v1"
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr[-3000:]
    assert "key --judge" in res.stderr and f"cst-ray train-judge --kind finetuned --output {d}" in res.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o.jsonl").exists()
