"""Experiment tracking from rank 0 (`train.tracking`): MLflow, or nothing.

    tracker = build_tracker(spec)        # rank 0; NullTracker elsewhere or when off
    tracker.log_metrics(metrics, step)   # every step
    tracker.log_export(export_dir)       # the merged model, at the end
    tracker.close()

A resumed run continues the MLflow run of the same name (tag `cst_ray.run`) instead of
starting another. mlflow is imported only when tracking is on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

from cst_ray.training.spec import WorkerSpec

log = logging.getLogger(__name__)
_BAD_METRIC_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


class NullTracker:
    def log_metrics(self, metrics: dict, step: int) -> None:
        pass

    def log_export(self, export_dir: str) -> None:
        pass

    def close(self) -> None:
        pass


class MLflowTracker(NullTracker):
    def __init__(self, spec: WorkerSpec):
        if spec.tracking_uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; it is the no-server default here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(spec.tracking_uri)
        exp = mlflow.set_experiment(spec.train.tracking_experiment)
        found = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`cst_ray.run` = '{spec.run_name}'",
                                   output_format="list", max_results=1)
        if found:  # a resumed job: the same run continues
            self.run = mlflow.start_run(run_id=found[0].info.run_id)
        else:
            self.run = mlflow.start_run(run_name=spec.run_name, tags={"cst_ray.run": spec.run_name})
            mlflow.log_params(_params(spec))
        log.info("[train] tracking to MLflow %s, run %s", spec.tracking_uri, self.run.info.run_id)

    def log_metrics(self, metrics: dict, step: int) -> None:
        clean = {_BAD_METRIC_CHARS.sub("_", k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and k != "step"}
        self.mlflow.log_metrics(clean, step=step)

    def log_export(self, export_dir: str) -> None:
        self.mlflow.log_artifacts(export_dir, artifact_path="model")

    def close(self) -> None:
        self.mlflow.end_run()


def _params(spec: WorkerSpec) -> dict:
    flat = {f"train.{k}": v for k, v in dataclasses.asdict(spec.train).items() if not isinstance(v, dict)}
    flat.update({f"train.lora.{k}": v for k, v in dataclasses.asdict(spec.train.lora).items()})
    flat.update({"model": spec.card.base_name if spec.card else spec.model_path, "pairs": spec.n_pairs,
                 "total_steps": spec.plan.total_steps})
    return {k: str(v)[:500] for k, v in flat.items()}


def build_tracker(spec: WorkerSpec, rank: int) -> NullTracker:
    if rank != 0 or not spec.train.tracking:
        return NullTracker()
    return MLflowTracker(spec)
