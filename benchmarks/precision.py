"""fp32 vs bf16 matmul speed on this CPU, and the precision `auto` chooses here (issue 28).

    python benchmarks/precision.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/precision.py   # AVX2 on an AMX machine

Times `torch.nn.functional.linear` of a 64x896 input by an 896x4864 weight (SmolLM2/Qwen-0.5B
sized MLP) on one thread, in fp32 and in bf16, and prints GFLOP/s for each and their ratio,
measured in the same run. The last line is `RESULT bf16_vs_fp32=<bf16 GFLOP/s / fp32 GFLOP/s>
auto=<bf16|fp32>`: below 1, bf16 is emulated here and `auto` must choose fp32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gflops(dtype, m: int, k: int, n: int, seconds: float) -> float:
    import torch

    x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    for _ in range(5):
        torch.nn.functional.linear(x, w)
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.nn.functional.linear(x, w)
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - t0) / 1e9


def main() -> None:
    import torch

    from cst_ray.core.precision import cpu_summary, resolve_precision

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per dtype")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    choice = resolve_precision()
    print(f"# cpu: {cpu_summary()}; torch {torch.__version__} kernels {torch.backends.cpu.get_cpu_capability()}; "
          f"precision auto: {choice.reason}; {args.threads} thread(s)")
    f32 = gflops(torch.float32, 64, 896, 4864, args.seconds)
    b16 = gflops(torch.bfloat16, 64, 896, 4864, args.seconds)
    print(f"fp32 linear 64x896 @ 896x4864: {f32:7.1f} GFLOP/s")
    print(f"bf16 linear 64x896 @ 896x4864: {b16:7.1f} GFLOP/s")
    print(f"RESULT bf16_vs_fp32={b16 / f32:.3f} auto={choice.train_precision}")


if __name__ == "__main__":
    main()
