#!/usr/bin/env bash
# Installs everything the demo and the tests need into .venv/ and node_modules/, once per change of
# the requirement files. Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pick_python() {
  # The plain python3 first: its torch wheel may already be on disk (no multi-GB download).
  for candidate in python3 python3.11 python3.12 python3.13; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "musetalk-stack needs Python 3.11 or newer" >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp_inputs=(requirements.txt requirements-dev.txt runtime/api/requirements.txt
  runtime/worker/requirements.txt requirements-mmpose.txt pyproject.toml scripts/bootstrap.sh
  scripts/install-mmpose.sh)
python_stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$python_stamp" ]; then
  echo "==> installing Python dependencies into .venv (first run takes a few minutes)"
  python -m pip install -q --upgrade pip 'setuptools>=77.0.3,<81' wheel
  # torch first, pinned: anything that depends on it must not pull another build.
  python -m pip install -q torch==2.13.0
  python -m pip install -q -r requirements-dev.txt
  # DWPose needs OpenMMLab with per-package flags (no torchvision, no compiled mmcv ops).
  ./scripts/install-mmpose.sh
  python -m pip install -q --no-deps -e .
  echo "$python_stamp" >.venv/.stamp
fi

node_stamp="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ "$(cat node_modules/.stamp 2>/dev/null)" != "$node_stamp" ]; then
  echo "==> installing the AWS CDK CLI and hls.js (the playground's player) into node_modules"
  npm ci --silent --no-audit --no-fund
  echo "$node_stamp" >node_modules/.stamp
fi
