"""train.tracking: mlflow logs params, every step's metrics and the export from rank 0, and a
resumed job continues the same MLflow run."""

from pathlib import Path

import pytest

from cst_ray.config.load import load_config
from cst_ray.training.spec import ModelCardInfo, WorkerSpec, plan_steps
from cst_ray.training.tracking import NullTracker, build_tracker


def _spec(tmp_path: Path) -> WorkerSpec:
    cfg = load_config(None, [f"run_dir={tmp_path}", "train.tracking=mlflow", "train.lr=0.001"])
    return WorkerSpec(train=cfg.train, model_path="m", trust_remote_code=False, pad_token_id=0, data_ref=None,
                      n_pairs=8, plan=plan_steps(8, cfg.train), card=ModelCardInfo("tiny", "CST", "s1", "s0"),
                      tracking_uri=(tmp_path / "mlruns").as_uri(), run_name="run-cst")


def test_mlflow_run_holds_params_metrics_and_export_and_resumes(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    spec = _spec(tmp_path)
    assert isinstance(build_tracker(spec, rank=1), NullTracker)  # only rank 0 logs
    t = build_tracker(spec, rank=0)
    t.log_metrics({"loss": 0.69, "rewards/margins": 0.0, "step": 1}, step=1)
    export = tmp_path / "model"
    export.mkdir()
    (export / "README.md").write_text("card")
    t.log_export(str(export))
    t.close()
    t2 = build_tracker(spec, rank=0)  # a restarted worker
    t2.log_metrics({"loss": 0.5, "rewards/margins": 0.3}, step=2)
    t2.close()
    client = mlflow.MlflowClient(tracking_uri=spec.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cst-ray").experiment_id])
    assert run.data.params["train.lr"] == "0.001" and run.data.params["pairs"] == "8"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "rewards/margins")] == [(1, 0.0), (2, 0.3)]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/README.md"]
