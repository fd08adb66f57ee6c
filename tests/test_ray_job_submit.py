"""The tiny pipeline submitted as a Ray job to a real head started on loopback, as users do."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.heavy
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    """A free loopback port outside Ray's default worker-port range (10002-19999) and 52365."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 20000 and port != 52365:
            return port


def _wait_listening(port: int, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, "ray start --head exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@pytest.fixture
def ray_head(tmp_path):
    """A head of our own: its own temp dir and ports, in its own process group (`--block`), so
    the teardown stops exactly the processes it started and no other Ray of the user's."""
    port, dash, client = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"  # the CLI then sends the token from ~/.ray/auth_token
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's unix socket paths end up inside
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                             f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}",
                             "--num-cpus=4", "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ray-head.log", "w"))
    try:
        _wait_listening(dash, 180, head)
        yield f"http://127.0.0.1:{dash}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_tiny_pipeline(ray_head, tmp_path):
    address, env = ray_head
    run_dir = tmp_path / "run"
    runtime_env = {"excludes": [".venv", "runs", ".git", "*.parquet"],
                   "env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}}
    cmd = [RAY, "job", "submit", f"--address={address}", "--working-dir", ".", "--runtime-env-json",
           json.dumps(runtime_env), "--", sys.executable, "jobs/run.py", "--config", "configs/tiny.yaml",
           f"run_dir={run_dir}"]
    # The dashboard listens before the head's job agent has registered; on a loaded machine a
    # submission then gets "No available agent to submit job, please try again later" (no job
    # is created), and a user tries again, as this does for up to 3 minutes.
    deadline = time.time() + 180
    while True:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1500)
        if res.returncode == 0 or "No available agent" not in res.stderr or time.time() > deadline:
            break
        time.sleep(5)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    import re

    sub_id = re.search(r"raysubmit_[A-Za-z0-9]+", res.stdout + res.stderr).group(0)
    status = subprocess.run([RAY, "job", "status", f"--address={address}", sub_id], capture_output=True, text=True,
                            env=env, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", status.stdout + status.stderr)
    assert re.search(rf"Job '{sub_id}' succeeded", text), text
    report = json.loads((run_dir / "evaluate" / "eval.json").read_text())
    assert set(report["scores"]) == {"base", "cst"}
    assert (run_dir / "train" / "cst" / "model" / "model.safetensors").is_file()
    assert (run_dir / "summary.md").is_file()
