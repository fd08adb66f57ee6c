"""Ray Train wiring: tokenize once in a Ray task, then a TorchTrainer of DeepSpeed workers.

Placement and fault tolerance are decided here only: ScalingConfig from `train.*`,
RunConfig(storage_path=<run>/train or a URI, name="ray_train") so that re-submitting the same
job resumes from the latest complete checkpoint, CheckpointConfig(num_to_keep), and
FailureConfig(max_failures) for restarts after a lost worker.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from cst_ray.config.departures import departures_markdown
from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import MissingDependencyError, StageError
from cst_ray.core.faults import FAULTS_ENV
from cst_ray.core.stats import read_metrics
from cst_ray.core.storage import join, resolve_storage
from cst_ray.data.sources import source_names
from cst_ray.models.chat import folds_system
from cst_ray.training.identity import claim_storage, run_identity
from cst_ray.training.progress import TrainingProgress
from cst_ray.training.spec import ModelCardInfo, WorkerSpec, plan_steps
from cst_ray.training.tokenize import tokenize_pairs

RUN_NAME = "ray_train"
FOLDED_NOTE = ("\n\nThis model's chat template has no system role: in training (and in generation) the system "
               "prompt was folded into the first user turn, \"<system prompt>\\n\\n<request>\"; use it the same way.")


def tokenize_for_training(pairs: list[dict], model_path: str, trust_remote_code: bool, max_length: int,
                          min_response_tokens: int, max_completion_length: int = 0) -> tuple[list[dict], dict]:
    """-> (tokenized rows, {"stats", "pad_token_id", "n_rows", "missing_reference" (pairs without
    reference log-probs), "first_missing_reference"}). Runs as a one-shot
    Ray task (`run_training`), so the driver never loads the tokenizer (transformers, ~0.15 GiB)
    and the rows go to the object store once, for every worker."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    rows, tstats = tokenize_pairs(tok, pairs, max_length=max_length, min_response_tokens=min_response_tokens,
                                  max_completion_length=max_completion_length)
    missing = [r["id"] for r in rows if "ref_chosen_logps" not in r or "ref_rejected_logps" not in r]
    # a count and the first id, not every id: without precomputed references that is every row
    return rows, {"stats": tstats.as_dict(), "pad_token_id": tok.pad_token_id, "n_rows": len(rows),
                  "system_folded": folds_system(tok),
                  "missing_reference": len(missing), "first_missing_reference": missing[0] if missing else ""}


def _data_note(cfg: CSTConfig) -> str:
    """How the preference data was made, and every departure from the paper, for the model card."""
    if not cfg.pairs.use_generated:
        note = "Pairs: the pair files in pairs.extra_tasks only (no generation)."
    elif cfg.generation.critic.name_or_path:
        note = (f"Pairs: `{cfg.model.name_or_path}` answered under the uncensored prompt (y0); "
                f"`{cfg.generation.critic.name_or_path}` wrote the critique and the revision (y1).")
    else:
        note = "Pairs: the model answered, critiqued and revised itself (the paper's self-critique)."
    return "\n".join([note, "", *departures_markdown(cfg)]).rstrip()


def _card_policies(cfg: CSTConfig) -> tuple[tuple[str, str, str], ...]:
    def rule(p) -> str:
        parts = [f"{p.default}s by default"] + ([f"answers {', '.join(p.answer)}"] if p.answer else []) + \
            ([f"refuses {', '.join(p.refuse)}"] if p.refuse else [])
        return "; ".join(parts)

    return tuple((p.name, p.prompts[0], rule(p)) for p in cfg.policies)


def _passthrough_env() -> dict:
    """The caller's fault-injection setting (tests) reaches the workers of this run only."""
    return {"env_vars": {FAULTS_ENV: os.environ[FAULTS_ENV]}} if os.environ.get(FAULTS_ENV) else {}


def run_training(cfg: CSTConfig, pairs: list[dict], *, model_path: str, out_dir: str | Path,
                 method: str = "CST", storage_path: str = "") -> dict:
    """Train on `pairs` (dicts with system/prompt/chosen/rejected/id). Returns the stage stats.

    Writes `out_dir/model` (merged HF export), `out_dir/metrics.jsonl`; checkpoints go under
    `storage_path` (default `out_dir/checkpoints`).
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_ref, meta = _tokenize(cfg, pairs, model_path)
    plan = plan_steps(meta["n_rows"], cfg.train)
    if plan.steps_per_epoch < 1:
        raise StageError(f"{meta['n_rows']} pairs cannot fill one global batch of {plan.global_batch} "
                         f"(train.num_workers x train.micro_batch_size x train.grad_accum)")
    spec = WorkerSpec(
        train=cfg.train, model_path=model_path, trust_remote_code=cfg.model.trust_remote_code,
        pad_token_id=meta["pad_token_id"], data_ref=rows_ref, n_pairs=meta["n_rows"], plan=plan,
        metrics_path=str(out_dir / "metrics.jsonl"), export_dir=str(out_dir / "model"),
        card=ModelCardInfo(base_name=cfg.model.name_or_path, method=method, s1=cfg.prompts.s1, s0=cfg.prompts.s0,
                           data_note=_data_note(cfg) + (FOLDED_NOTE if meta["system_folded"] else ""),
                           sources=tuple(source_names(cfg.data.source)), policies=_card_policies(cfg)),
        **_tracking(cfg, method),
    )
    storage = resolve_storage(storage_path or str(out_dir / "checkpoints"))
    claim_storage(join(storage, RUN_NAME), run_identity(cfg.train, pairs, model_path))  # never another run's
    trainer = _trainer(spec, storage)
    with TrainingProgress(out_dir / "metrics.jsonl", plan.total_steps, label=f"train:{method.lower()}"):
        result = trainer.fit()
    if result.error:
        raise result.error
    metrics = read_metrics(out_dir / "metrics.jsonl")
    return {
        "method": method,
        "pairs_in": len(pairs),
        "tokenize": meta["stats"],
        "global_batch_pairs": plan.global_batch,
        "total_steps": plan.total_steps,
        "final_metrics": metrics[-1] if metrics else {},
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "model_dir": str(out_dir / "model"),
    }


def _tracking(cfg: CSTConfig, method: str) -> dict:
    """The WorkerSpec's tracking fields; a missing mlflow is an error before any worker starts."""
    if not cfg.train.tracking:
        return {}
    if importlib.util.find_spec("mlflow") is None:
        raise MissingDependencyError("train.tracking: mlflow needs the `tracking` extra "
                                     "(pip install -e '.[tracking]', i.e. mlflow-skinny)")
    uri = cfg.train.tracking_uri or (Path(cfg.run_dir).resolve() / "mlruns").as_uri()
    return {"tracking_uri": uri, "run_name": f"{Path(cfg.run_dir).name}-{method.lower()}"}


def _tokenize(cfg: CSTConfig, pairs: list[dict], model_path: str):
    """Tokenize in a one-shot Ray task -> (ObjectRef of the rows, meta); checks the result."""
    import ray

    tc = cfg.train
    # max_calls=1: the task's process exits afterwards instead of idling with a tokenizer loaded
    task = ray.remote(num_returns=2, max_calls=1, num_cpus=1)(tokenize_for_training)
    rows_ref, meta_ref = task.remote(pairs, model_path, cfg.model.trust_remote_code, tc.max_length,
                                     tc.min_response_tokens, tc.max_completion_length)
    meta = ray.get(meta_ref)
    if not meta["n_rows"]:
        raise StageError("no trainable pairs after tokenization (see train.max_length)")
    if tc.reference == "precomputed" and meta["missing_reference"]:
        raise StageError(f"train.reference=precomputed but {meta['missing_reference']} of {meta['n_rows']} pairs have "
                         f"no reference log-probs (first: {meta['first_missing_reference']}); set "
                         f"pairs.reference_logps: true and re-run `cst-ray pairs` with the same train.max_length")
    return rows_ref, meta


def _trainer(spec: WorkerSpec, storage: str):
    """The TorchTrainer: workers, checkpoints (kept, stored), restarts after a lost worker."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from cst_ray.training.recipe import train_loop_per_worker  # noqa: PLC0415 (imports torch; the driver stays light)

    tc = spec.train
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec},
        torch_config=TorchConfig(backend="nccl" if tc.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker={"CPU": tc.cpus_per_worker}),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            worker_runtime_env=_passthrough_env(),
        ),
    )
