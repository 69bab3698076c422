#!/usr/bin/env bash
# Runs every check CI runs: formatting, lint, types, security scans, then the test suites.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
. "$root/scripts/bootstrap.sh"
cd "$root"

# The browser test (tests/e2e/test_playground.py) drives Debian's Chromium, never a downloaded one.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing chromium (Debian package) for the browser test"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

echo "==> ruff format --check"
ruff format --check .
echo "==> ruff check"
ruff check .
echo "==> mypy runtime infra bench"
mypy
echo "==> pytest"
python -m pytest "$@"
