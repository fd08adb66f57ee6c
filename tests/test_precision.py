"""Precision `auto` (issue 28): bf16 only where the hardware multiplies bf16 natively. The CPU
facts are injected, never read from the test machine."""

import logging

import pytest

from cst_ray.config.load import config_from_dict, load_config
from cst_ray.config.precision import resolve_auto_precision
from cst_ray.core.precision import Choice, Hardware, choose_precision, cpu_flags, cpu_name, cpu_summary

AVX2_EPYC = frozenset("fpu sse sse2 avx avx2 fma bmi2".split())
AVX512_NO_BF16 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512vl"}
EPYC_BF16 = AVX512_NO_BF16 | {"avx512_bf16"}
XEON_AMX = EPYC_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}


@pytest.mark.parametrize("flags, aten, onednn, bf16, says", [
    (AVX2_EPYC, "AVX2", "", False, "cpu: AVX2, no native bf16 -> fp32"),
    (AVX512_NO_BF16, "AVX512", "", False, "cpu: AVX-512, no native bf16 -> fp32"),
    (EPYC_BF16, "AVX512", "", True, "cpu: AVX512-BF16, native bf16 (avx512_bf16) -> bf16 generation, bf16-mixed training"),
    (XEON_AMX, "AVX512", "", True, "cpu: AMX, native bf16 (amx_bf16, avx512_bf16) -> bf16 generation, bf16-mixed training"),
    # the AVX2 approximation on an AMX machine (issue 28): either restriction makes bf16 emulated
    (XEON_AMX, "AVX512", "AVX2", False, "cpu: AMX, but ONEDNN_MAX_CPU_ISA=AVX2 disables it -> fp32"),
    (XEON_AMX, "AVX2", "", False, "cpu: AMX, but PyTorch runs AVX2 kernels (ATEN_CPU_CAPABILITY) -> fp32"),
    (XEON_AMX, "AVX512", "avx512_core_amx", True, "cpu: AMX, native bf16 (amx_bf16, avx512_bf16) -> bf16 generation, bf16-mixed training"),
    (frozenset(), "DEFAULT", "", False, "cpu: flags unknown, no native bf16 -> fp32"),
])
def test_cpu_choice_follows_the_flags_and_the_kernels_this_process_may_use(flags, aten, onednn, bf16, says):
    choice = choose_precision(Hardware(cpu_flags=flags, aten_capability=aten, onednn_max_isa=onednn))
    assert choice.bf16 is bf16
    assert choice.reason == says
    # a CPU with native bf16 generates in bf16 and trains bf16-mixed (fp32 weights, bf16 autocast)
    assert (choice.train_precision, choice.torch_dtype_name) == (("bf16-mixed", "bfloat16") if bf16 else ("fp32", "float32"))


def test_gpu_choice_follows_bf16_support():
    h100 = choose_precision(Hardware(device="cuda", cuda_bf16=True, gpu_name="NVIDIA H100"))
    assert h100 == Choice(True, "NVIDIA H100: native bf16 -> bf16", "cuda")
    assert h100.train_precision == "bf16"  # DeepSpeed's bf16 on a GPU; bf16-mixed is the CPU choice
    t4 = choose_precision(Hardware(device="cuda", cuda_bf16=False, gpu_name="Tesla T4"))
    assert (t4, t4.train_precision) == (Choice(False, "Tesla T4: no bf16 support -> fp32", "cuda"), "fp32")


def test_cpu_facts_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx", "avx2", "fma"})
    assert cpu_name(info) == "AMD EPYC 7B13"
    assert cpu_summary(cpu_flags(info), cpu_name(info)) == "AMD EPYC 7B13; AVX2"
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_the_defaults_are_auto_and_the_driver_makes_them_concrete_for_its_cpu():
    cfg = load_config("configs/default.yaml")
    assert (cfg.generation.engine.dtype, cfg.train.precision, cfg.pairs.reference_dtype) == ("auto", "auto", "auto")
    slow = choose_precision(Hardware(cpu_flags=AVX2_EPYC, aten_capability="AVX2"))
    done, line = resolve_auto_precision(cfg, slow)
    assert (done.generation.engine.dtype, done.train.precision) == ("float32", "fp32")
    assert line == ("precision: cpu: AVX2, no native bf16 -> fp32 (generation.engine.dtype: auto -> float32, "
                    "train.precision: auto -> fp32)")
    fast = choose_precision(Hardware(cpu_flags=XEON_AMX, aten_capability="AVX512"))
    done, _ = resolve_auto_precision(cfg, fast)
    assert (done.generation.engine.dtype, done.train.precision) == ("bfloat16", "bf16-mixed")


def test_an_explicit_setting_wins_and_emulated_bf16_is_warned_about(caplog):
    cfg = config_from_dict({}, overrides=["generation.engine.dtype=bfloat16", "train.precision=fp32"])
    slow = choose_precision(Hardware(cpu_flags=AVX2_EPYC, aten_capability="AVX2"))
    with caplog.at_level(logging.WARNING, logger="cst_ray.config.precision"):
        done, line = resolve_auto_precision(cfg, slow)
    assert (done.generation.engine.dtype, done.train.precision) == ("bfloat16", "fp32")
    assert "generation.engine.dtype: bfloat16, train.precision: fp32" in line
    assert [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()] == [
        "generation.engine.dtype set to bf16 on a CPU without native bf16 (cpu: AVX2, no native bf16 -> fp32): "
        "bf16 is emulated here, about 5x slower than fp32; set them to auto or fp32/float32"]


def test_work_placed_on_gpus_keeps_auto_for_each_worker_to_choose():
    cfg = config_from_dict({}, overrides=["generation.pool.num_gpus=1", "train.use_gpu=true"])
    done, line = resolve_auto_precision(cfg, choose_precision(Hardware(cpu_flags=AVX2_EPYC, aten_capability="AVX2")))
    assert (done.generation.engine.dtype, done.train.precision) == ("auto", "auto")
    assert "(on each GPU actor)" in line and "(on each GPU worker)" in line


def test_a_bad_precision_names_its_key():
    from cst_ray.core.errors import ConfigError

    with pytest.raises(ConfigError, match="train.precision"):
        config_from_dict({}, overrides=["train.precision=fp16"])
