"""`auto` precision settings made concrete for a run whose compute is this machine's CPU.

`generation.engine.dtype`, `train.precision` and `pairs.reference_dtype` default to `auto`.
Where the work runs on this machine's CPU (the embedded default, or a CPU cluster of the same
machines), the driver turns `auto` into the choice of `core.precision` before any stage starts,
so stage fingerprints, `config.yaml` and the model card hold the precision actually used, and a
run folder moved to a CPU of the other kind is redone rather than reused. Work placed on GPUs
keeps `auto`: each engine actor and training worker chooses on its own device.

    cfg, line = resolve_auto_precision(cfg)
    log.info(line)   # precision: cpu: AVX2, no native bf16 -> fp32 (generation.engine.dtype: auto -> float32, ...)
"""

from __future__ import annotations

import dataclasses
import logging

from cst_ray.config.schema import CSTConfig
from cst_ray.core.precision import Choice, resolve_precision

log = logging.getLogger(__name__)


def resolve_auto_precision(cfg: CSTConfig, choice: Choice | None = None) -> tuple[CSTConfig, str]:
    """-> (cfg with `auto` replaced where the compute is this machine's CPU, one line saying
    what was chosen and why). `choice` is injected by tests; by default it is this process's."""
    choice = choice or resolve_precision()
    g, t = cfg.generation, cfg.train
    said = []
    if g.engine.dtype == "auto" and g.pool.num_gpus <= 0:
        g = dataclasses.replace(g, engine=dataclasses.replace(g.engine, dtype=choice.torch_dtype_name))
        said.append(f"generation.engine.dtype: auto -> {choice.torch_dtype_name}")
    else:
        said.append(f"generation.engine.dtype: {g.engine.dtype}" + (" (on each GPU actor)" if g.engine.dtype == "auto"
                                                                    else ""))
    if t.precision == "auto" and not t.use_gpu:
        t = dataclasses.replace(t, precision=choice.train_precision)
        said.append(f"train.precision: auto -> {choice.train_precision}")
    else:
        said.append(f"train.precision: {t.precision}" + (" (on each GPU worker)" if t.precision == "auto" else ""))
    _warn_emulated(g.engine.dtype, t.precision, t.use_gpu, g.pool.num_gpus, choice)
    cfg = dataclasses.replace(cfg, generation=g, train=t)
    return cfg, f"precision: {choice.reason} ({', '.join(said)})"


def _warn_emulated(engine_dtype: str, train_precision: str, train_gpu: bool, engine_gpus: float,
                   choice: Choice) -> None:
    """An explicit bf16 on a CPU that emulates it runs ~5x slower than fp32 (issue 28)."""
    if choice.bf16:
        return
    slow = [k for k, on_cpu, bf16 in (("generation.engine.dtype", engine_gpus <= 0, engine_dtype == "bfloat16"),
                                       ("train.precision", not train_gpu, train_precision.startswith("bf16"))) if on_cpu and bf16]
    if slow:
        log.warning(f"{' and '.join(slow)} set to bf16 on a CPU without native bf16 ({choice.reason}): bf16 is "
                    f"emulated here, about 5x slower than fp32; set them to auto or fp32/float32")
