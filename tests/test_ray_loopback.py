"""The embedded local cluster listens on loopback only: every listening socket of the Ray
processes that `init_ray` starts is bound to 127.0.0.1, and the node IP is 127.0.0.1.

Run in a fresh interpreter (Ray reads the setting when it is imported), with its own Ray temp
folder; `ray.shutdown()` stops only the processes that interpreter started."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

PROBE = r"""
import json, os, sys
import psutil
from cst_ray.config.schema import RayConfig
from cst_ray.core.ray_env import init_ray

init_ray(RayConfig(num_cpus=1, object_store_mb=128))
import ray

@ray.remote
def worker_pid():
    return os.getpid()

ray.get(worker_pid.remote())  # a worker process, with its own gRPC server, is up too
me = psutil.Process()
listening = set()
for p in [me, *me.children(recursive=True)]:
    try:
        conns = p.net_connections(kind="inet")
        name = p.name()
    except psutil.Error:
        continue
    listening |= {(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
print(json.dumps({"node_ip": ray.util.get_node_ip_address(), "listening": sorted(listening)}))
ray.shutdown()
"""

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _probe(extra_env: dict[str, str]) -> dict:
    tmp = tempfile.mkdtemp(prefix="rlb", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    env.update({"RAY_TMPDIR": tmp, **extra_env})
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_embedded_cluster_listens_on_loopback_only():
    got = _probe({})
    assert got["node_ip"] == "127.0.0.1"
    names = {name for name, _, _ in got["listening"]}
    assert {"gcs_server", "raylet"} <= names, got["listening"]  # the probe does see Ray's servers
    exposed = [s for s in got["listening"] if s[1] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_a_user_who_asks_for_a_clusterable_node_gets_the_machines_address():
    # The setting is the user's to override: with it on, Ray picks the machine's address and
    # listens beyond loopback, which is what the test above would catch.
    got = _probe({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"})
    assert any(s[1] not in LOOPBACK for s in got["listening"]), got["listening"]
