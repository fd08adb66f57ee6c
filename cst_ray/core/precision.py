"""`auto` precision: bf16 where the hardware multiplies in bf16 natively, fp32 elsewhere.

On a CPU, bf16 matmuls are fast only with AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`):
measured with `benchmarks/precision.py`, bf16 `linear` is ~2x fp32 on a Xeon with AMX and
~4.7x *slower* than fp32 on an AVX2-only EPYC (issue 28). The choice also follows what the
process is allowed to use: `ATEN_CPU_CAPABILITY=avx2` (PyTorch's kernels) or
`ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's) turn bf16 back into an emulated, slow type even on an AMX
machine. On a GPU, bf16 where `torch.cuda.is_bf16_supported()` (Ampere and later), else fp32. Training on
a CPU with native bf16 is `bf16-mixed` (bf16 autocast over fp32 weights; `Choice.train_precision`).

The decision is a pure function of the facts (`choose_precision`), so it is tested with flags
injected; `detect_hardware` reads the facts of this process, `cpu_name` and `cpu_flags` those of
the machine.

    choice = resolve_precision()          # Choice(bf16=False, reason="cpu: AVX2, no native bf16 -> fp32")
    choice.torch_dtype_name               # "float32" (engines); choice.train_precision: "fp32"
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# CPU flags (as /proc/cpuinfo names them) that make bf16 matmuls native.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, case-insensitive) under which oneDNN still uses bf16
# instructions; any other cap (SSE41, AVX, AVX2, AVX2_VNNI, AVX512_CORE, ...) emulates bf16.
_ONEDNN_BF16_ISAS = ("avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16",
                     "avx10_1_512", "avx10_1_512_amx", "avx10_1_512_amx_fp16", "all", "default")
# PyTorch CPU capabilities (torch.backends.cpu.get_cpu_capability) below AVX-512.
_SLOW_ATEN = ("DEFAULT", "NO AVX", "AVX", "AVX2", "ZVECTOR", "VSX")


@dataclass(frozen=True)
class Hardware:
    """The facts the choice depends on."""

    device: str = "cpu"  # "cpu" or "cuda"
    cpu_flags: frozenset = frozenset()
    aten_capability: str = ""  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, ...
    onednn_max_isa: str = ""  # ONEDNN_MAX_CPU_ISA, "" = not set
    cuda_bf16: bool = False  # torch.cuda.is_bf16_supported()
    gpu_name: str = ""


@dataclass(frozen=True)
class Choice:
    bf16: bool
    reason: str
    device: str = "cpu"

    @property
    def train_precision(self) -> str:
        """A CPU with native bf16 trains `bf16-mixed` (fp32 weights, bf16 autocast): on the same
        pairs it carried the switch to an unseen source where pure bf16 did not (RESULTS.md, issue
        33), at ~1.24x bf16's step time. A GPU trains `bf16` as DeepSpeed users expect."""
        if not self.bf16:
            return "fp32"
        return "bf16" if self.device == "cuda" else "bf16-mixed"

    @property
    def torch_dtype_name(self) -> str:
        return "bfloat16" if self.bf16 else "float32"


def choose_precision(hw: Hardware) -> Choice:
    """bf16 where the hardware (and what this process may use of it) multiplies bf16 natively."""
    if hw.device == "cuda":
        name = hw.gpu_name or "cuda"
        return Choice(True, f"{name}: native bf16 -> bf16", "cuda") if hw.cuda_bf16 else \
            Choice(False, f"{name}: no bf16 support -> fp32", "cuda")
    isa = _isa_label(hw.cpu_flags)
    native = [f for f in NATIVE_BF16_FLAGS if f in hw.cpu_flags]
    if not native:
        return Choice(False, f"cpu: {isa}, no native bf16 -> fp32")
    if hw.onednn_max_isa and hw.onednn_max_isa.lower() not in _ONEDNN_BF16_ISAS:
        return Choice(False, f"cpu: {isa}, but ONEDNN_MAX_CPU_ISA={hw.onednn_max_isa} disables it -> fp32")
    if hw.aten_capability.upper() in _SLOW_ATEN:
        return Choice(False, f"cpu: {isa}, but PyTorch runs {hw.aten_capability} kernels "
                             f"(ATEN_CPU_CAPABILITY) -> fp32")
    return Choice(True, f"cpu: {isa}, native bf16 ({', '.join(native)}) -> bf16 generation, bf16-mixed training")


def _isa_label(flags: frozenset) -> str:
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "no AVX2" if flags else "flags unknown"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset:
    """The first processor's flags, or an empty set where /proc/cpuinfo is not there."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary(flags: frozenset | None = None, name: str | None = None) -> str:
    """'Intel(R) Xeon(R) Processor; AMX, AVX-512, AVX512-BF16' -- the CPU named beside a timing."""
    flags = cpu_flags() if flags is None else flags
    has = [label for flag, label in (("amx_bf16", "AMX"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("avx2", "AVX2")) if flag in flags]
    return f"{cpu_name() if name is None else name}; {', '.join(has) or 'no AVX2'}"


def detect_hardware(device: str = "cpu") -> Hardware:
    """The facts of this process: its CPU's flags and the kernels PyTorch and oneDNN may use, or
    (device="cuda") the current GPU."""
    import torch

    if device == "cuda":
        return Hardware(device="cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()),
                        gpu_name=torch.cuda.get_device_name(0))
    return Hardware(device="cpu", cpu_flags=cpu_flags(), aten_capability=torch.backends.cpu.get_cpu_capability(),
                    onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def resolve_precision(device: str = "cpu") -> Choice:
    return choose_precision(detect_hardware(device))


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """A torch dtype name for an engine: `dtype` itself, or for "auto" this process's choice."""
    return resolve_precision(device).torch_dtype_name if dtype == "auto" else dtype
