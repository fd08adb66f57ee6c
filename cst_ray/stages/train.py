"""Stage 3, train: Ray Train + DeepSpeed for each method (cst, dpo)."""

from __future__ import annotations

import json
import logging
import time

import pyarrow.parquet as pq

from cst_ray.config.schema import CSTConfig
from cst_ray.core.errors import StageError
from cst_ray.core.ray_env import init_ray
from cst_ray.core.stats import write_stats
from cst_ray.core.storage import join as storage_join
from cst_ray.models.resolve import resolve_model
from cst_ray.stages.common import stage_dir, write_stage_stats
from cst_ray.training.driver import run_training

log = logging.getLogger(__name__)


def train(cfg: CSTConfig, methods: list[str] | None = None) -> dict:
    """Ray Train + DeepSpeed DPO on each pair set in `train.methods`."""
    init_ray(cfg.ray)
    model_path = resolve_model(cfg.model)
    out = stage_dir(cfg, "train")
    all_stats = {}
    for method in methods or cfg.train.methods:
        mdir = out / method
        if (mdir / "stats.json").is_file():
            all_stats[method] = json.loads((mdir / "stats.json").read_text())
            continue
        pairs_file = stage_dir(cfg, "pairs") / f"{method}.parquet"
        if not pairs_file.is_file():
            raise StageError(f"{pairs_file} not found; run `cst-ray pairs` first")
        pairs = pq.read_table(pairs_file).to_pylist()
        t0 = time.time()
        ckpt = storage_join(cfg.train.storage_path, method) if cfg.train.storage_path else ""
        st = run_training(cfg, pairs, model_path=model_path, out_dir=mdir, method=method.upper(), storage_path=ckpt)
        st["wall_s"] = round(time.time() - t0, 2)
        write_stats(mdir / "stats.json", st)
        fm = st["final_metrics"]
        log.info(f"train[{method}]: {st['total_steps']} steps, loss {fm.get('loss', float('nan')):.4f}, "
             f"margin {fm.get('rewards/margins', float('nan')):.3f}, {st['wall_s']:.0f}s")
        all_stats[method] = st
    write_stage_stats(cfg, "train", all_stats)
    return all_stats
