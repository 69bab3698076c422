#!/usr/bin/env bash
# Keeps the whole service running locally (emulator, API, one worker) for the `musetalk` CLI until
# Ctrl-C; prints the two variables and the CLI command to use from any other shell. Arguments go
# to `python -m runtime.local up` (e.g. --models DIR; --help). Installs on first run, as demo.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
. "$root/scripts/bootstrap.sh"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python -m runtime.local up "$@"
