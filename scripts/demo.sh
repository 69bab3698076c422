#!/usr/bin/env bash
# Runs the whole service on this machine against a local AWS emulator and renders the sample media:
# uploads through presigned POSTs, two jobs (video avatar, still image), progress, SNS completion
# events, mp4s in out/. Arguments go to `python -m runtime.local demo` (e.g. --models DIR; --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
. "$root/scripts/bootstrap.sh"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python -m runtime.local demo "$@"
