#!/usr/bin/env bash
# Installs mmpose for DWPose into the active Python environment (CPU torch, no torchvision, no
# compiled mmcv ops), idempotently. Pins live in requirements-mmpose.txt; docs/faces.md says why.
# Usage: scripts/install-mmpose.sh   (with .venv activated, after torch==2.13.0 is installed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
reqs="$root/requirements-mmpose.txt"

pin() { grep -E "^$1[=<>]" "$reqs" | head -n1; }

if python - <<'PY' 2>/dev/null; then
import importlib.metadata as md
import sys
want = {"mmpose": "1.2.0", "mmengine": "0.10.7", "mmcv-lite": "2.1.0", "xtcocotools": "1.14.3"}
sys.exit(0 if all(md.version(k) == v for k, v in want.items()) else 1)
PY
  echo "==> mmpose already installed"
  exit 0
fi

echo "==> installing mmpose (CPU, no torchvision, no mmcv ops)"
python -m pip install -q "$(pin setuptools)" "$(pin mmengine)" "$(pin mmcv-lite)" "$(pin numpy)" \
  "$(pin opencv-python)" "$(pin scipy)" "$(pin munkres)" "$(pin six)" "$(pin cython)"
python -m pip install -q --no-deps "$(pin mmpose)"
python -m pip install -q --no-deps --no-build-isolation --no-binary xtcocotools "$(pin xtcocotools)"
