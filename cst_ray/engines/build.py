"""`build_engine`: the engine a config names. It sits above `engines.base`, `.hf` and `.vllm`
(both engines import base), so nothing imports back into a cycle; vLLM, transformers and torch
themselves load only inside the engines' constructors."""

from __future__ import annotations

from cst_ray.config.schema import EngineConfig
from cst_ray.engines.base import Engine
from cst_ray.engines.hf import HFEngine
from cst_ray.engines.vllm import VLLMEngine


def build_engine(model_path: str, cfg: EngineConfig, *, trust_remote_code: bool = False) -> Engine:
    if cfg.backend == "vllm":
        return VLLMEngine(model_path, cfg, trust_remote_code=trust_remote_code)
    if cfg.backend == "hf":
        return HFEngine(model_path, cfg, trust_remote_code=trust_remote_code)
    raise ValueError(f"unknown engine backend {cfg.backend!r}")
