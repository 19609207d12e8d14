#!/usr/bin/env bash
# Installs the pinned stack into a virtual environment, once.
#
# A second call costs a second: it finds the stamp of the first and returns.
# mmcv has no binary wheel for recent torch, so it is compiled (~10-20 min on
# 2 cores) into a cache outside the repository, keyed by the torch build, and
# that wheel is reused by every later environment on this machine.
#
# Environment overrides:
#   VENV                where to create the environment   (default: <repo>/.venv)
#   PYTHON              interpreter for the environment   (default: python3.11 or python3)
#   TORCH_SPEC          torch requirement                 (default: torch==2.13.0, the CPU wheel)
#   TORCH_INDEX_URL     extra index for a CUDA torch, e.g. https://download.pytorch.org/whl/cu121
#   MMCV_FIND_LINKS     a prebuilt mmcv index to try before compiling, e.g.
#                       https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html
#   CONFORMALSAM_CACHE  wheel cache                       (default: ~/.cache/conformalsam_mmseg)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CACHE=${CONFORMALSAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conformalsam_mmseg}
MMCV_VERSION=2.1.0
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

stamp_key=$(cat "$ROOT/setup.py" "$ROOT/requirements/"*.txt "$0" | sha1sum | cut -c1-12)
STAMP="$VENV/.conformalsam-installed-$stamp_key-$(echo "$TORCH_SPEC" | tr -c 'a-zA-Z0-9.' '_')"
if [ -f "$STAMP" ]; then
  exit 0
fi

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

torch_args=("$TORCH_SPEC")
[ -n "${TORCH_INDEX_URL:-}" ] && torch_args+=(--extra-index-url "$TORCH_INDEX_URL")
log "installing $TORCH_SPEC"
"${PIP[@]}" "${torch_args[@]}" wheel ninja psutil numpy

torch_tag=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
py_tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
WHEELS="$CACHE/wheels/torch-$torch_tag"
mkdir -p "$WHEELS"

if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-$py_tag-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ] && [ -n "${MMCV_FIND_LINKS:-}" ]; then
    log "trying a prebuilt mmcv from $MMCV_FIND_LINKS"
    "$VENV/bin/python" -m pip download --no-deps -q -d "$WHEELS" \
      "mmcv==$MMCV_VERSION" -f "$MMCV_FIND_LINKS" --only-binary=:all: || true
    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-$py_tag-*.whl 2>/dev/null | head -n 1 || true)
  fi
  if [ -z "$wheel" ]; then
    log "compiling mmcv $MMCV_VERSION with ops against torch $torch_tag (one time, 10-20 min)"
    # mmcv 2.1.0's setup.py needs the old setuptools; torch wants the new one back afterwards.
    "${PIP[@]}" "setuptools<70"
    build_dir=$(mktemp -d)
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$VENV/bin/python" -m pip wheel \
      --no-deps --no-build-isolation --disable-pip-version-check \
      "mmcv==$MMCV_VERSION" -w "$build_dir" >"$CACHE/mmcv-build.log" 2>&1 || {
        log "mmcv build failed; see $CACHE/mmcv-build.log"; exit 1; }
    # Move into place only when complete, so an interrupted build never leaves a broken wheel.
    mv "$build_dir"/mmcv-*.whl "$WHEELS/"
    rmdir "$build_dir"
    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-$py_tag-*.whl | head -n 1)
  else
    log "reusing $wheel"
  fi
  "${PIP[@]}" "setuptools>=77" --no-deps "$wheel"
fi

log "installing runtime and test requirements"
"${PIP[@]}" "setuptools>=77" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c "import mmcv.ops, mmseg, conformalsam_mmseg" || {
  log "the environment does not import; see the messages above"; exit 1; }
rm -f "$VENV"/.conformalsam-installed-*
touch "$STAMP"
log "ready: $VENV"
