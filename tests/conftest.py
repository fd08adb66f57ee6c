import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "configurable-system-prompt-multitask.json"

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from cst_ray.config import ModelConfig
    from cst_ray.models import resolve_model

    return resolve_model(ModelConfig(name_or_path="tiny-random-llama"))


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="session")
def shared_pairs_path() -> str:
    if not SHARED_DATA.is_file():
        pytest.skip(f"the author's CST data set is not at {SHARED_DATA} (only the project's shared/ folder has it)")
    return str(SHARED_DATA)


def run_cli(args: list[str], cwd: Path | None = None, env: dict | None = None, timeout: int = 1200):
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cst_ray.cli", *args], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)
