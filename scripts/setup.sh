#!/usr/bin/env bash
# One-time, idempotent set-up of a fresh Debian machine (root or sudo), then nothing to do:
#   - system OpenGL libraries for MuJoCo's headless rendering (EGL, OSMesa as fallback);
#   - a virtual environment in .venv with the CPU build of torch installed FIRST (an
#     unpinned torch would pull a multi-GB CUDA build), then rlvlmf itself (editable);
#   - with --test: the test extras (pytest, hypothesis, pyarrow, ray) and Debian's Chromium,
#     which the audit-report test uses to render the HTML report headlessly.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
[ "${1:-}" = "--test" ] && mode=test

need_apt=()
ldconfig -p | grep -q 'libEGL.so.1' || need_apt+=(libegl1 libgl1-mesa-dri)
ldconfig -p | grep -q 'libGL.so.1' || need_apt+=(libgl1)
ldconfig -p | grep -q 'libOSMesa.so' || need_apt+=(libosmesa6)
if [ "$mode" = test ] && ! command -v chromium >/dev/null; then
    need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[dev,parquet,ray]"
stamp=.venv/.rlvlmf-setup-$mode-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages into .venv (torch 2.13.0 CPU first)"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
    .venv/bin/python -c "import torch, rlvlmf; assert torch.__version__.startswith('2.13.0'), torch.__version__"
    rm -f .venv/.rlvlmf-setup-"$mode"-*
    touch "$stamp"
fi
