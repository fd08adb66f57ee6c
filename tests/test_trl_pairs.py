"""The pairs stage also writes TRL's conversational preference format (pairs/trl/{cst,dpo}.parquet):
prompt = [system, user], chosen / rejected = [assistant], row for row with the flat files."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cst_ray.config.schema import S0_DEFAULT, S1_DEFAULT
from cst_ray.data.pairs import mirror_pairs, to_table, to_trl_table

S1, S0 = "safe prompt", "uncensored prompt"
GENS = [{"id": "a", "prompt": "x1", "y0": "harmful a", "y1": "refusal a"},
        {"id": "b", "prompt": "x2", "y0": "harmful b", "y1": "refusal b"}]


def test_trl_rows_carry_the_system_turn_and_the_flipped_preference():
    flat = to_table(mirror_pairs(GENS, s1=S1, s0=S0, mode="cst"))
    trl = to_trl_table(flat).to_pylist()
    assert len(trl) == flat.num_rows == 4
    by_system = {r["prompt"][0]["content"]: r for r in trl if r["prompt"][1]["content"] == "x1"}
    assert by_system[S1] == {"prompt": [{"role": "system", "content": S1}, {"role": "user", "content": "x1"}],
                             "chosen": [{"role": "assistant", "content": "refusal a"}],
                             "rejected": [{"role": "assistant", "content": "harmful a"}]}
    assert by_system[S0]["chosen"] == [{"role": "assistant", "content": "harmful a"}]
    assert by_system[S0]["rejected"] == [{"role": "assistant", "content": "refusal a"}]


def _pairs_stage(tmp_path):
    from cst_ray.config.load import load_config
    from cst_ray.stages.pairs import build_pairs

    run = tmp_path / "run"
    gens = pa.Table.from_pylist([dict(g, critique="c", principle="p") for g in GENS])
    (run / "generate" / "generations").mkdir(parents=True)
    pq.write_table(gens, run / "generate" / "generations" / "part-00000-x.parquet")
    cfg = load_config(None, overrides=[f"run_dir={run}", "pairs.reference_logps=false", "pairs.s0_augment=[]"])
    build_pairs(cfg)
    return run / "pairs"


def test_pairs_stage_writes_trl_files_next_to_the_flat_ones(tmp_path):
    out = _pairs_stage(tmp_path)
    for mode, n in (("cst", 4), ("dpo", 2)):
        flat, trl = pq.read_table(out / f"{mode}.parquet"), pq.read_table(out / "trl" / f"{mode}.parquet")
        assert trl.column_names == ["prompt", "chosen", "rejected"] and trl.num_rows == flat.num_rows == n
        assert [p[0]["content"] for p in trl.column("prompt").to_pylist()] == flat.column("system").to_pylist()
        assert [c[0]["content"] for c in trl.column("chosen").to_pylist()] == flat.column("chosen").to_pylist()


def test_datasets_reads_the_trl_file_with_its_system_turn(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the bench extra (scripts/setup.sh --bench) has datasets")
    out = _pairs_stage(tmp_path)
    ds = datasets.load_dataset("parquet", data_files=str(out / "trl" / "cst.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 4 and set(ds.column_names) == {"prompt", "chosen", "rejected"}
    assert {r["prompt"][0]["role"] for r in ds} == {"system"}
    assert {r["prompt"][0]["content"] for r in ds} == {S1_DEFAULT, S0_DEFAULT}  # the run's s1 and s0
    assert all(r["prompt"][1]["role"] == "user" and r["chosen"][0]["role"] == "assistant" for r in ds)


@pytest.mark.heavy
def test_trl_dpo_trainer_takes_one_step_on_the_file(tmp_path, tiny_model_path):
    pytest.importorskip("datasets", reason="the bench extra (scripts/setup.sh --bench) has datasets")
    trl = pytest.importorskip("trl", reason="the bench extra (scripts/setup.sh --bench) has trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _pairs_stage(tmp_path)
    ds = datasets.load_dataset("parquet", data_files=str(out / "trl" / "cst.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    args = trl.DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2,
                         report_to=[], logging_steps=1, save_strategy="no", use_cpu=True)
    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_path), args=args,
                             train_dataset=ds, processing_class=tok)
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss == pytest.approx(0.6931, abs=0.05)
