"""Autoscaling generation on a real multi-node Ray cluster (several raylets on this machine):
actors spread over nodes, and a node removed mid-run loses and duplicates no prompt id."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

pytestmark = pytest.mark.heavy

N = 32


def _rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("part-*.parquet"))
            for r in pq.read_table(f, columns=["prompt_id", "node_id"]).to_pylist()]


def test_node_removed_mid_run_exactly_once(tmp_path):
    from ray.cluster_utils import Cluster

    # Head: 1 CPU (Ray Data's small tasks), too small for an engine actor (2 CPUs). Three
    # 2-CPU worker nodes: the 2 actors of the pool must sit on two different nodes, and the
    # third is the spare capacity an autoscaler would have added.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = {}
    try:
        for _ in range(3):
            node = cluster.add_node(num_cpus=2)
            workers[node.node_id] = node
        cluster.wait_for_nodes()
        run = tmp_path / "run"
        out = run / "generate" / "generations"
        args = ["generate", "--config", "configs/tiny.yaml", f"run_dir={run}", f"data.limit={N}", "data.eval_limit=2",
                "generation.engine.backend=hf", "generation.engine.max_new_tokens=6",
                "generation.critique.critique_max_new_tokens=4", "generation.pool.min_actors=2",
                "generation.pool.max_actors=2", "generation.pool.num_cpus=2", "generation.pool.batch_size=2",
                "generation.pool.threads=1", "generation.rows_per_shard=2", "generation.progress_interval_s=2"]
        env = dict(os.environ, RAY_ADDRESS=cluster.address)
        log = open(tmp_path / "generate.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "cst_ray.cli", *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        victim = None
        while time.time() < deadline:
            assert proc.poll() is None, "generate ended before a node could be removed:\n" + (tmp_path / "generate.log").read_text()[-3000:]
            seen = {r["node_id"] for r in _rows(out)} & set(workers)
            if len(_rows(out)) >= 4 and seen:
                victim = sorted(seen)[0]
                break
            time.sleep(0.5)
        assert victim, "no rows were written"
        rows_before = len(_rows(out))
        assert rows_before < N, "the run finished before the node was removed; raise N"
        cluster.remove_node(workers[victim], allow_graceful=False)
        assert proc.wait(timeout=900) == 0, (tmp_path / "generate.log").read_text()[-4000:]
    finally:
        cluster.shutdown()

    rows = _rows(out)
    ids = [r["prompt_id"] for r in rows]
    expected = sorted(pq.read_table(run / "prompts" / "train.parquet").column("id").to_pylist())
    assert sorted(ids) == expected and len(ids) == len(set(ids)) == N  # 0 lost, 0 duplicated
    nodes = {r["node_id"] for r in rows}
    assert len(nodes) >= 2, f"actors did not spread over nodes: {nodes}"
    assert nodes <= set(workers), "an engine actor ran on the head (it has too few CPUs)"
    after = {r["node_id"] for r in rows[rows_before:]}
    assert victim in nodes and after - {victim}, "no rows came from the surviving nodes after the removal"
    st = json.loads((run / "generate" / "stats.json").read_text())
    print("rows_by_node", st["rows_by_node"], "victim", victim, "rows_before", rows_before)
    assert sum(st["rows_by_node"].values()) == N
