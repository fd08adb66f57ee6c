"""Deployment files load and carry what Ray's launcher and KubeRay require."""

import json
import re
import shlex
from pathlib import Path

import jsonschema
import yaml

from cst_ray.config.load import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def _yaml(name):
    return yaml.safe_load((CLUSTER / name).read_text())


def test_launcher_matches_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = _yaml("launcher-aws.yaml")
    jsonschema.validate(cfg, schema)
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu_groups = [n for n in types if n != cfg["head_node_type"]]
    assert gpu_groups and all(types[n]["max_workers"] > types[n]["min_workers"] for n in gpu_groups)
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])
    # token auth on every node (issue 25), the token from Ray's default path, never from the file
    starts = [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def _check_pod_template(t, where):
    containers = t["spec"]["containers"]
    assert containers, f"{where}: no containers"
    for c in containers:
        assert c.get("name") and c.get("image"), f"{where}: container needs name and image"
        env = {e["name"]: e for e in c.get("env", [])}
        assert "RAY_AUTH_TOKEN" in env and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], \
            f"{where}: the auth token must come from a secret"


def _check_cluster_spec(spec, where):
    assert spec["rayVersion"] == "2.60.0"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head
    _check_pod_template(head["template"], f"{where}.headGroupSpec")
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        for k in ("groupName", "rayStartParams", "template", "minReplicas", "maxReplicas"):
            assert k in g, f"{where}.workerGroupSpecs: missing {k}"
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"]
        _check_pod_template(g["template"], f"{where}.{g['groupName']}")
        gpus = g["template"]["spec"]["containers"][0]["resources"]["requests"].get("nvidia.com/gpu")
        assert gpus, f"{where}.{g['groupName']}: GPU worker groups request GPUs"


def test_kuberay_raycluster():
    doc = _yaml("kuberay-raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    _check_cluster_spec(doc["spec"], "RayCluster")


def test_kuberay_rayjob_and_its_config():
    doc = _yaml("kuberay-rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    for k in ("entrypoint", "rayClusterSpec", "runtimeEnvYAML"):
        assert k in spec
    yaml.safe_load(spec["runtimeEnvYAML"])
    _check_cluster_spec(spec["rayClusterSpec"], "RayJob")
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/run.py"] and (ROOT / argv[1]).is_file()
    config = argv[argv.index("--config") + 1]
    assert (ROOT / config).is_file(), f"RayJob references {config}, which is not in configs/"
    load_config(ROOT / config, overrides=[a for a in argv[argv.index("--config") + 2:] if "=" in a])


def test_runtime_env_has_no_credentials():
    env = _yaml("runtime_env.yaml")
    assert env["working_dir"] == "."
    text = "\n".join(p.read_text() for p in CLUSTER.iterdir())
    assert not re.search(r"(AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,}|aws_secret_access_key\s*[:=])", text)
