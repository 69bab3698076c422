#!/usr/bin/env bash
# Runs the whole service on this machine against a local AWS emulator and renders the sample media.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
. "$root/scripts/bootstrap.sh"
cd "$root"
echo "Local mode is not built yet (issue: one command runs the whole service locally)."
echo "Dependencies are installed; run scripts/test.sh for the test suite."
