import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "configurable-system-prompt-multitask.json"

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray clusters started by tests (fixtures that import Ray before cst-ray's init_ray, the job
# test's head) listen on loopback only, as the embedded default does (core/ray_env.py).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# and never join a cluster the developer's shell points at: each test starts and stops its own
os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from cst_ray.config.schema import ModelConfig
    from cst_ray.models.resolve import resolve_model

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


@pytest.fixture
def s3_bucket(monkeypatch):
    """A real S3-compatible server (moto) on loopback and an empty bucket; returns its s3:// URI.

    The fake credentials and the endpoint go only into the environment, as a user's would.
    """
    import socket
    import uuid

    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cst-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cst-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    import boto3

    bucket = f"cst-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield f"s3://{bucket}"
    server.stop()
