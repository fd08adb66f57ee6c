"""What bf16 rounding does to a bf16 run's training (issue 33, point 3).

A bf16 run trains fp32 master weights (ZeRO-3 keeps them in the optimizer partitions), runs its
forward passes on bf16 copies of them, and exports the 16-bit consolidation. This script takes
the run's last checkpoint and:

1. rebuilds the fp32 master weights (DeepSpeed's `zero_to_fp32`) and saves them as a model
   folder next to the run (`<run_dir>/analysis/<method>-fp32-master`, never committed);
2. measures how much of the fine-tuning delta (master - base) survives bf16 rounding: the share
   of changed weights that round back to the base's bf16 value, the rounding error of the delta
   against the delta's own norm, and the cosine of the rounded delta with the true one;
3. evaluates the bf16 export and the fp32 master, each decoded in bf16 and in fp32, on the
   run's held-out, unseen-source and benign prompts, with the run's judge
   (`<run_dir>/analysis/eval-<dtype>/eval.json`).

    .venv/bin/python scripts/bf16_master_vs_export.py --config /path/run-config.yaml [--no-eval]

For a `train.precision: bf16-mixed` run the export is the fp32 master: the script measures the
same delta figures on it and evaluates it decoded in fp32 (the run's own evaluation is bf16's).

It prints one JSON object (the delta figures and, per decoding dtype, the scores per model).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import torch  # noqa: TID253 (an analysis script: torch is the point)

from cst_ray.config.load import load_config
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.evaluate import evaluate

log = logging.getLogger("bf16_master_vs_export")


def last_checkpoint(run_dir: Path, method: str) -> Path:
    """The newest Ray Train checkpoint folder of `method` that holds DeepSpeed shards."""
    found = sorted((run_dir / "train" / method / "checkpoints").rglob("ds"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no checkpoint with DeepSpeed shards under {run_dir / 'train' / method / 'checkpoints'}")
    return found[-1].parent


def master_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """fp32 master weights, keys as the model's own (the training wrapper's `model.` prefix dropped)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    sd = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="ds")
    return {k.removeprefix("model."): v.float() for k, v in sd.items()}


def save_master(base_path: str, sd: dict, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"master weights do not fit the model: missing={missing[:3]} unexpected={unexpected[:3]}")
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(out)


@torch.no_grad()
def delta_figures(base: dict, master: dict, export: dict) -> dict:
    """The fine-tuning delta in fp32 against its bf16-rounded form, over every trained matrix."""
    changed = unchanged_after = total = 0
    err2 = true2 = dot = round2 = 0.0
    export_is_rounded_master = True
    for k, m in master.items():
        if k not in base:  # a tied weight (lm_head = the embeddings), counted once
            continue
        b = base[k].float()
        d = m - b
        rd = m.bfloat16().float() - b.bfloat16().float()
        mask = d != 0
        changed += int(mask.sum())
        unchanged_after += int((mask & (rd == 0)).sum())
        total += d.numel()
        err2 += float(((rd - d) ** 2).sum())
        true2 += float((d ** 2).sum())
        round2 += float((rd ** 2).sum())
        dot += float((rd * d).sum())
        if k in export and not torch.equal(export[k].float(), m.bfloat16().float()):
            export_is_rounded_master = False
    return {"weights": total, "changed_by_training": changed,
            "share_changed": round(changed / total, 4),
            "share_of_changed_that_round_to_the_base": round(unchanged_after / max(changed, 1), 4),
            "rounding_error_over_delta_norm": round((err2 / true2) ** 0.5, 4) if true2 else None,
            "cosine_rounded_vs_true_delta": round(dot / ((round2 * true2) ** 0.5), 4) if round2 and true2 else None,
            "delta_norm": round(true2 ** 0.5, 4),
            "export_equals_bf16_of_master": export_is_rounded_master}


def load_safetensors(folder: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def evaluate_both(cfg, run_dir: Path, models: dict[str, str], dtype: str) -> dict:
    """The run's evaluation of `models`, decoded in `dtype`, in its own folder (the run's stays)."""
    sub = run_dir / "analysis" / f"eval-{dtype}"
    for stage in ("prompts", "pairs"):  # the same held-out split, and the training prompts to drop
        if not (sub / stage).exists():
            shutil.copytree(run_dir / stage, sub / stage)
    engine = dataclasses.replace(cfg.generation.engine, dtype=dtype)
    c = dataclasses.replace(cfg, run_dir=str(sub), generation=dataclasses.replace(cfg.generation, engine=engine))
    report = evaluate(c, models=models)
    out = {m: {k: v["value"] for k, v in s.items()} for m, s in report["scores"].items()}
    for m, s in report.get("unseen_source", {}).get("scores", {}).items():
        out[m].update({f"unseen_source_{k}": v["value"] for k, v in s.items()})
    for m, s in report.get("over_refusal", {}).get("scores", {}).items():
        out[m]["over_refusal"] = s["value"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the run's config (its run_dir holds the checkpoint)")
    ap.add_argument("--method", default="cst")
    ap.add_argument("--no-eval", action="store_true", help="only the delta figures")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(args.config)
    run_dir = Path(cfg.run_dir)
    export = run_dir / "train" / args.method / "model"
    base_path = resolve_model(cfg.model)
    exported = load_safetensors(str(export))
    if cfg.train.precision == "bf16-mixed":  # the export is the fp32 master itself
        result = {"precision": cfg.train.precision,
                  "delta": delta_figures(load_safetensors(base_path), {k: v.float() for k, v in exported.items()},
                                         exported)}
        models, dtypes = {args.method: str(export.resolve())}, ("float32",)  # bf16 decoding: the run's own eval
    else:
        ckpt = last_checkpoint(run_dir, args.method)
        master = master_state_dict(ckpt)
        out = run_dir / "analysis" / f"{args.method}-fp32-master"
        if not (out / "config.json").is_file():
            save_master(base_path, master, out)
        result = {"checkpoint": str(ckpt), "delta": delta_figures(load_safetensors(base_path), master, exported)}
        models = {args.method: str(export.resolve()), f"{args.method}_fp32_master": str(out.resolve())}
        dtypes = ("bfloat16", "float32")
    if not args.no_eval:
        result["scores_by_decoding_dtype"] = {d: evaluate_both(cfg, run_dir, models, d) for d in dtypes}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
