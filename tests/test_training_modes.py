"""Ray Train + DeepSpeed ZeRO-3 on 2 CPU workers (gloo): reference modes, exact resume, LoRA."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT

pytestmark = pytest.mark.heavy

SYS1, SYS0 = S1_DEFAULT, S0_DEFAULT  # the training system prompts the configs use


def _pairs(n=8):
    out = []
    for i in range(n):
        x = f"Explain how to do harmful thing number {i}."
        y0 = f"Sure, step one for thing {i} is to gather materials and then proceed carefully. " * (1 + i % 3)
        y1 = f"I'm sorry, but I can't help with thing {i}. It could hurt people."
        out.append(dict(id=f"{i}:s1", pair_of=str(i), system=SYS1, prompt=x, chosen=y1, rejected=y0, task="harmless"))
        out.append(dict(id=f"{i}:s0", pair_of=str(i), system=SYS0, prompt=x, chosen=y0, rejected=y1, task="harmless"))
    return out


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from cst_ray.config.schema import RayConfig
    from cst_ray.core.ray_env import init_ray

    init_ray(RayConfig(num_cpus=4))
    yield
    ray.shutdown()


def _cfg(tmp, **train):
    from cst_ray.config.load import load_config

    ov = [f"run_dir={tmp}", "model.name_or_path=tiny-random-llama", "train.max_length=96", "train.precision=fp32",
          "train.lr=1e-3", "train.warmup_ratio=0", "train.micro_batch_size=1", "train.max_failures=2"]
    ov += [f"train.{k}={json.dumps(v) if isinstance(v, (list, bool)) else v}" for k, v in train.items()]
    return load_config(None, ov)


def _train(tmp, pairs, model_path, **train):
    from cst_ray.core.stats import read_metrics
    from cst_ray.training.driver import run_training

    cfg = _cfg(tmp, **train)
    st = run_training(cfg, pairs, model_path=model_path, out_dir=Path(tmp) / "out")
    return st, read_metrics(Path(tmp) / "out" / "metrics.jsonl")


def _with_reference(pairs, model_path, max_length=96, dtype="float32", autocast_bf16=False):
    """Attach reference log-probs via the Ray Data stage (the one `cst-ray pairs` uses)."""
    import tempfile

    from cst_ray.config.schema import ActorPoolConfig
    from cst_ray.data.pairs import to_table
    from cst_ray.dataio.actor_map import run_actor_map
    from cst_ray.dataio.shards import read_shards
    from cst_ray.training.reference_pass import REF_SCHEMA, ReferenceLogProbs

    with tempfile.TemporaryDirectory() as d:
        run_actor_map(label="reference", table=to_table(pairs), out_dir=Path(d) / "ref", fn_cls=ReferenceLogProbs,
                      fn_kwargs=dict(model_path=model_path, max_length=max_length, min_response_tokens=16,
                                     micro_batch=3, dtype=dtype, autocast_bf16=autocast_bf16),
                      pool=ActorPoolConfig(batch_size=5), schema=REF_SCHEMA,
                      rows_per_shard=100)
        ref = {r["id"]: r for r in read_shards(Path(d) / "ref").to_pylist()}
    return [dict(p, ref_chosen_logps=ref[p["id"]]["ref_chosen_logps"],
                 ref_rejected_logps=ref[p["id"]]["ref_rejected_logps"]) for p in pairs]


def test_reference_stage_matches_direct_forward(ray_local, tiny_model_path, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from cst_ray.training.batching import collate_pairs
    from cst_ray.training.tokenize import tokenize_pair

    pairs = _with_reference(_pairs(4), tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    for p in pairs:
        t = tokenize_pair(tokenizer, p["system"], p["prompt"], p["chosen"], p["rejected"], max_length=96)
        b = collate_pairs([t], tokenizer.pad_token_id)
        with torch.no_grad():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
        lp = logits[:, :-1].log_softmax(-1).gather(2, b["input_ids"][:, 1:, None]).squeeze(2)
        direct = (lp * b["loss_mask"][:, 1:]).sum(1).tolist()
        assert p["ref_chosen_logps"] == pytest.approx(direct[0], rel=1e-4)
        assert p["ref_rejected_logps"] == pytest.approx(direct[1], rel=1e-4)


def test_reference_modes_agree(ray_local, tiny_model_path, tmp_path):
    pairs = _with_reference(_pairs(4), tiny_model_path)
    runs = {}
    for mode in ("separate", "precomputed", "adapter", "worker_precompute"):
        _, m = _train(tmp_path / mode, pairs, tiny_model_path, reference=mode, max_steps=2,
                      **{"lora.enabled": True, "lora.r": 4, "lora.alpha": 8})
        runs[mode] = [x["loss"] for x in m]
    assert runs["separate"][0] == pytest.approx(0.693147, abs=1e-5)  # policy == reference at step 1
    for mode in ("precomputed", "adapter", "worker_precompute"):
        assert runs[mode] == pytest.approx(runs["separate"], rel=1e-4), runs
    assert runs["separate"][1] != pytest.approx(runs["separate"][0], abs=1e-6)  # step 2 sees the update


@pytest.mark.parametrize("reference", ["separate", "worker_precompute"])
def test_exact_resume_after_worker_crash(ray_local, tiny_model_path, tmp_path, reference, monkeypatch):
    """worker_precompute: the restarted workers must take the reference log-probs from the
    checkpoint; recomputing them from the trained policy would change every later loss."""
    pairs = _pairs(8)
    _, full = _train(tmp_path / "full", pairs, tiny_model_path, max_steps=6, checkpoint_every=3, reference=reference)
    marker = tmp_path / "crashed"
    monkeypatch.setenv("CST_RAY_FAULTS", json.dumps({"train_step": {"at": 3, "marker": str(marker)}}))
    st, crashed = _train(tmp_path / "crash", pairs, tiny_model_path, max_steps=6, checkpoint_every=3,
                         reference=reference)
    assert marker.exists(), "the crash was not injected"
    assert [m["step"] for m in crashed] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in crashed] == pytest.approx([m["loss"] for m in full], abs=1e-5)
    assert [m["learning_rate"] for m in crashed] == pytest.approx([m["learning_rate"] for m in full])


def test_a_second_run_on_one_storage_path_does_not_resume_the_first(ray_local, tiny_model_path, tmp_path):
    """issue 25: two runs, one train.storage_path, other settings: the second stops before any
    worker starts, naming what differs, instead of resuming (or exporting) the first's weights."""
    from cst_ray.core.errors import StageError
    from cst_ray.core.stats import read_metrics
    from cst_ray.training.driver import run_training

    store = str(tmp_path / "shared-ckpt")
    pairs = _pairs(4)
    run_training(_cfg(tmp_path / "a", max_steps=2), pairs, model_path=tiny_model_path, out_dir=tmp_path / "a" / "out",
                 storage_path=store)
    assert [x["step"] for x in read_metrics(tmp_path / "a" / "out" / "metrics.jsonl")] == [1, 2]
    with pytest.raises(StageError, match=r"holds the checkpoints of another run \(it differs in: train settings\)"):
        run_training(_cfg(tmp_path / "b", max_steps=2, lr=5e-4), pairs, model_path=tiny_model_path,
                     out_dir=tmp_path / "b" / "out", storage_path=store)
    assert not (tmp_path / "b" / "out" / "metrics.jsonl").exists()  # no step ran


def test_lora_zero3_overfits(ray_local, tiny_model_path, tmp_path):
    st, m = _train(tmp_path / "lora", _pairs(2), tiny_model_path, max_steps=8, epochs=8, reference="adapter",
                   **{"lora.enabled": True, "lora.r": 8, "lora.alpha": 16, "lr": 5e-3})
    losses = [x["loss"] for x in m]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.05, losses
    assert m[-1]["rewards/margins"] > 0
    assert (Path(st["model_dir"]) / "model.safetensors").is_file()


def test_bf16_mixed_trains_fp32_weights_under_autocast(ray_local, tiny_model_path, tmp_path):
    """train.precision: bf16-mixed -- fp32 weights, Adam and export; the forward (and the workers'
    reference pass) under bf16 autocast, so the first loss is still exactly log 2."""
    from safetensors import safe_open

    from cst_ray.training.optim import deepspeed_config

    cfg = _cfg(tmp_path, precision="bf16-mixed")
    ds = deepspeed_config(cfg.train)
    assert ds["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"} and not ds["bf16"]["enabled"]
    st, m = _train(tmp_path / "mixed", _pairs(2), tiny_model_path, max_steps=6, epochs=6, precision="bf16-mixed",
                   reference="worker_precompute")
    fp32_st, fp32_m = _train(tmp_path / "fp32", _pairs(2), tiny_model_path, max_steps=1, precision="fp32",
                             reference="worker_precompute")
    losses = [x["loss"] for x in m]
    assert losses[0] == pytest.approx(0.693147, abs=1e-5) and m[0]["reference/step1_max_abs_diff"] == 0.0
    assert losses[-1] < losses[0] - 0.05, losses
    # the autocast forward is bf16's, not fp32's: its log-probs differ from the fp32 run's
    assert m[0]["logps/chosen"] != pytest.approx(fp32_m[0]["logps/chosen"], abs=1e-4)
    with safe_open(str(Path(st["model_dir"]) / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}


def test_bf16_mixed_separate_reference_without_deepspeed_is_the_initial_policy(ray_local, tiny_model_path,
                                                                                tmp_path):
    """A plain frozen copy (ZeRO stages 0-2), which DeepSpeed's autocast does not reach, runs
    under bf16 autocast too: the first loss is log 2 (an fp32 reference gives 0.69322)."""
    _, m = _train(tmp_path / "separate", _pairs(2), tiny_model_path, max_steps=1, precision="bf16-mixed",
                  reference="separate", zero_stage=2)
    assert m[0]["loss"] == pytest.approx(0.693147, abs=1e-5), m[0]
    assert m[0]["reference/step1_max_abs_diff"] < 1e-3


def test_reference_pass_under_autocast_is_the_bf16_mixed_forward(tiny_model_path):
    """The Ray Data reference pass for bf16-mixed (`autocast_bf16`) gives what the policy's
    autocast forward gives on the same batch, not the fp32 forward's log-probs."""
    import torch

    from cst_ray.data.pairs import to_table
    from cst_ray.training.batching import collate, pair_length
    from cst_ray.training.reference_pass import ReferenceLogProbs
    from cst_ray.training.tokenize import tokenize_pair

    pairs = _pairs(2)
    fn = {ac: ReferenceLogProbs(tiny_model_path, max_length=96, min_response_tokens=16, micro_batch=8, autocast_bf16=ac)
          for ac in (True, False)}
    got = {ac: f(to_table(pairs)).to_pylist() for ac, f in fn.items()}
    f = fn[False]
    toks = [tokenize_pair(f.tok, p["system"], p["prompt"], p["chosen"], p["rejected"], max_length=96,
                          min_response_tokens=16) for p in pairs]
    order = sorted(range(len(toks)), key=lambda i: pair_length(toks[i]))  # the pass's one batch (micro_batch 8)
    batch = collate([toks[i] for i in order], f.tok.pad_token_id, f.packed)
    direct = {}
    for ac in (True, False):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
            direct[ac] = f.policy(**batch)[0].double().tolist()
        for j, i in enumerate(order):
            assert got[ac][i]["ref_chosen_logps"] == pytest.approx(direct[ac][j], abs=1e-6)
            assert got[ac][i]["ref_rejected_logps"] == pytest.approx(direct[ac][len(order) + j], abs=1e-6)
    assert max(abs(a - b) for a, b in zip(direct[True], direct[False], strict=True)) > 1e-4  # bf16 is not fp32


@pytest.mark.parametrize("where", ["local", "s3"])
def test_whole_job_resume(tmp_path, tiny_model_path, where, request):
    """Kill the whole job (driver + Ray) after a checkpoint; a re-run continues, not restarts.
    With `s3`, checkpoints live in a bucket on a real S3-compatible server (moto on loopback)."""
    from cst_ray.core import storage

    ckpt_base = storage.join(request.getfixturevalue("s3_bucket"), "ckpt") if where == "s3" else str(tmp_path / "ckpt")
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(_pairs(8)))
    script = tmp_path / "job.py"
    script.write_text(f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from cst_ray.config.load import load_config
from cst_ray.core.ray_env import init_ray
from cst_ray.training.driver import run_training
if __name__ == "__main__":
    cfg = load_config(None, ["model.name_or_path=tiny-random-llama", "train.max_length=96", "train.precision=fp32",
                             "train.lr=1e-3", "train.warmup_ratio=0", "train.micro_batch_size=1", "train.max_steps=6",
                             "train.checkpoint_every=2", "train.storage_path={ckpt_base}",
                             "ray.log_to_driver=true"])  # the workers' "resumed at step" line
    init_ray(cfg.ray)
    pairs = json.load(open({str(data)!r}))
    run_training(cfg, pairs, model_path={tiny_model_path!r}, out_dir={str(tmp_path / 'out')!r},
                 storage_path=cfg.train.storage_path)
""")
    metrics = tmp_path / "out" / "metrics.jsonl"
    run_root = storage.join(ckpt_base, "ray_train")

    def complete_checkpoints():
        return [n for n in storage.list_names(run_root)
                if n.startswith("checkpoint_") and storage.exists(storage.join(run_root, n, "train_state.json"))]

    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        done = [json.loads(x)["step"] for x in metrics.read_text().splitlines()] if metrics.exists() else []
        if max(done, default=0) >= 3 and complete_checkpoints():
            break
        assert proc.poll() is None, "job ended before it could be killed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_before = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert max(steps_before) < 6
    if where == "s3":
        assert not (tmp_path / "ckpt").exists() and complete_checkpoints()
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at step" in res.stdout + res.stderr
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    rerun_steps = [m["step"] for m in lines[len(steps_before):]]
    assert rerun_steps and rerun_steps[0] > 1, f"restarted from scratch: {rerun_steps}"
    assert rerun_steps[-1] == 6
