#!/usr/bin/env bash
# One device call for the cold-start figures (bench/results/*-coldstart-2.md): why AOT packages
# crashed, then fresh-process cold starts with bytecode compiled (as an image build does), in
# the machine's full image and in a minimal venv (torch + the worker's requirements only).
# Run from the repository root with our wheels installed in /tmp/site; results under $OUT.
#   STEPS="probe build aot eager compare" bash bench/coldstart_device.sh
set -o pipefail
OUT=${OUT:-/tmp/coldstart-out}
STEPS=${STEPS:-probe build aot eager compare}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site"
DEVICE=${DEVICE:-cuda} WEIGHTS_SIZE=${WEIGHTS_SIZE:-}  # DEVICE=cpu WEIGHTS_SIZE=--tiny: a smoke run
MODELS=${MODELS:-/tmp/models} CACHE=${CACHE:-/tmp/cache} EAGER_CACHE=${EAGER_CACHE:-/tmp/cache-eager}
begin=$(date +%s)
mark() { echo "== +$(($(date +%s) - begin)) s: $*"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }
# The engine's packages are built only where the probe (when it ran) loaded that kind.
outside_loads() {
  [[ ! -f "$OUT/probe_small.json" ]] || python3 -c "import json, sys
summary = json.load(open('$OUT/probe_small.json')).get('summary', {})
sys.exit(0 if summary.get('small/$DEVICE/outside/fresh') is True else 1)"
}

mkdir -p "$OUT"
mark "bytecode for our wheels and the repository (as the image build does)"
python3 -m compileall -q -j 16 /tmp/site runtime bench >/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

mark "random full-size weights (background)"
python3 -m runtime.engine make-weights "$MODELS" $WEIGHTS_SIZE >/tmp/make_weights.txt 2>&1 &
weights=$!

if wants probe; then
  mark "AOT loader probe: small model"
  python3 bench/aot_loader_probe.py --device "$DEVICE" --out "$OUT/probe_small.json" \
    --only ${PROBES:-small/cuda/inside/fresh,small/cuda/outside/fresh,small/cpu/inside/fresh}
fi
wait $weights
mark "weights written"
if wants probe; then
  mark "AOT loader probe: Whisper encoder, weights outside the library"
  python3 bench/aot_loader_probe.py --device "$DEVICE" --models "$MODELS" --out "$OUT/probe_whisper.json" \
    --only whisper/cuda/outside/fresh
fi

if wants build && outside_loads; then
  mark "build-artifacts (weights beside the libraries)"
  time python3 -m runtime.engine build-artifacts --models "$MODELS" --cache-dir "$CACHE" \
    --device "$DEVICE" \
    >/tmp/build.txt 2>&1
  tail -25 /tmp/build.txt
fi

if wants aot && ls "$CACHE"/aot/*/manifest.json >/dev/null 2>&1; then
  mark "AOT cold starts, minimal env"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --probe-timeout 90 \
    --states aot,aot,aot_no_graphs --minimal-env ${MENV:-/tmp/menv} --probes-in-minimal-env \
    --importtime --imports --out "$OUT/cs_aot_minimal.json" | grep '^{"cold_start"'
  mark "AOT cold start, full image"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --probe-timeout 90 \
    --states aot --importtime --out "$OUT/cs_aot_full.json" | grep '^{"cold_start"'
fi

if wants eager; then
  mark "eager cold starts, full image"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$EAGER_CACHE" --probe-timeout 120 \
    --states eager_uncached,eager_cached --importtime --imports \
    --out "$OUT/cs_eager_full.json" | grep '^{"cold_start"'
  mark "eager cold starts, minimal env"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$EAGER_CACHE" --probe-timeout 120 \
    --states eager_cached,eager_cached --minimal-env ${MENV:-/tmp/menv}2 --probes-in-minimal-env \
    --importtime --out "$OUT/cs_eager_minimal.json" | grep '^{"cold_start"'
fi

if wants compare && ls "$CACHE"/aot/*/manifest.json >/dev/null 2>&1; then
  mark "AOT against eager in one process (speed, PSNR)"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --states "" \
    --compare unet_graph,no_graphs --out "$OUT/compare.json" | grep -E '^\{"(eager|unet_graph|no_graphs)"'
fi
mark "done"
