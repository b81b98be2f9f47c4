#!/usr/bin/env bash
# Set up everything panoptic_ocr needs, idempotently.
#
# Default: a virtual environment at ./.venv (override with VENV=path).
# Existing environment: PANOPTIC_OCR_ENV=current bash tools/setup_env.sh
#   installs into the python on PATH (or $PYTHON) and leaves an importable
#   torch, torchvision and detectron2 untouched (e.g. a CUDA build from source).
#
# A second run with nothing changed returns in well under a second: the
# installed state is recorded in a stamp file keyed by this script and setup.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
MODE="${PANOPTIC_OCR_ENV:-venv}"
VENV="${VENV:-$ROOT/.venv}"
# torch/torchvision pair used when none is importable. GPU users: install your
# own CUDA build first and it is kept.
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
D2_SOURCE_WHEEL="sal-detectron2==0.7.2"
WHEEL_CACHE="$ROOT/.cache/wheels"

log() { printf '[setup_env] %s\n' "$*" >&2; }

if [ "$MODE" = "venv" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
elif [ "$MODE" = "current" ]; then
  PY="$(command -v "$PYTHON")"
else
  log "PANOPTIC_OCR_ENV must be 'venv' or 'current', got '$MODE'"
  exit 2
fi

STAMP_DIR="$("$PY" -c 'import sys; print(sys.prefix)')"
STAMP="$STAMP_DIR/.panoptic_ocr_setup"
KEY="$(cat "$0" setup.py | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY:$ROOT" ]; then
  exit 0
fi

# pip's notes about absent local index folders are noise on machines with extra indexes.
pip_install() {
  "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  log "installing $TORCH_SPEC (takes a few minutes the first time)"
  # shellcheck disable=SC2086
  pip_install $TORCH_SPEC "numpy<2"
fi

if "$PY" -c "import detectron2" 2>/dev/null; then
  log "detectron2 already importable: leaving it as it is"
else
  mkdir -p "$WHEEL_CACHE"
  D2_WHEEL="$(ls "$WHEEL_CACHE"/detectron2-0.7.2-py3-none-any.whl 2>/dev/null || true)"
  if [ -z "$D2_WHEEL" ]; then
    log "building a pure-Python detectron2 0.7.2 wheel from PyPI's $D2_SOURCE_WHEEL"
    SRC_DIR="$(mktemp -d)"
    trap 'rm -rf "$SRC_DIR"' EXIT
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
      --python-version 3.10 --implementation cp -d "$SRC_DIR" "$D2_SOURCE_WHEEL"
    "$PY" "$ROOT/tools/repack_detectron2_wheel.py" "$SRC_DIR"/sal_detectron2-*.whl "$WHEEL_CACHE"
    D2_WHEEL="$WHEEL_CACHE/detectron2-0.7.2-py3-none-any.whl"
  fi
  log "installing $D2_WHEEL"
  pip_install "$D2_WHEEL"
fi

log "installing panoptic_ocr (editable, with test extras)"
pip_install -e "$ROOT[test]"
"$PY" -m pip check
echo "$KEY:$ROOT" > "$STAMP"
log "done: $PY"
