#!/usr/bin/env bash
# One device call for the cold-start figures (bench/results/*-coldstart-2.md): which AOT package
# builds load (bench/aot_loader_probe.py), the engine's packages built the first way that loaded,
# then fresh-process cold starts with bytecode compiled (as an image build does), in the
# machine's full image and in a minimal venv (torch + the worker's requirements only).
# Run from the repository root with our wheels installed in /tmp/site; results under $OUT.
#   STEPS="probe build aot eager compare" bash bench/coldstart_device.sh
# PROBES: the probe's variants (model/device/weights/load[/flags]); WHISPER_PROBES likewise for
# the full-size Whisper encoder (default: none); AOT_CXX_FLAGS: g++ flags for the build when the
# probe did not run.
set -o pipefail
OUT=${OUT:-/tmp/coldstart-out}
STEPS=${STEPS:-probe build aot eager compare}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site"
DEVICE=${DEVICE:-cuda} WEIGHTS_SIZE=${WEIGHTS_SIZE:-}  # DEVICE=cpu WEIGHTS_SIZE=--tiny: a smoke run
MODELS=${MODELS:-/tmp/models} CACHE=${CACHE:-/tmp/cache} EAGER_CACHE=${EAGER_CACHE:-/tmp/cache-eager}
begin=$(date +%s)
mark() { echo "== +$(($(date +%s) - begin)) s: $*"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }
# The g++ flags of the first probe variant with weights outside that loaded ("default": none
# needed, "none": nothing loaded); without a probe, $AOT_CXX_FLAGS.
build_flags() {
  if [[ ! -f "$OUT/probe_small.json" ]]; then echo "${AOT_CXX_FLAGS:-default}"; return; fi
  python3 - "$OUT/probe_small.json" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from aot_loader_probe import FLAG_SETS
for variant, loaded in json.load(open(sys.argv[1])).get("summary", {}).items():
    model, device, weights, load, *flags = variant.split("/")
    if loaded is True and weights == "outside":
        names = flags[0].split("+") if flags else []
        print(" ".join(flag for name in names for flag in FLAG_SETS[name]) or "default")
        sys.exit()
print("none")
PY
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
    --only "${PROBES:-small/cuda/outside/fresh/hidden,small/cuda/outside/fresh/noasneeded,small/cuda/outside/fresh/symbolic,small/cuda/outside/fresh/isolated}"
fi
wait $weights
mark "weights written"
WHISPER_PROBES=${WHISPER_PROBES:-}
if wants probe && [[ -n "$WHISPER_PROBES" ]]; then
  mark "AOT loader probe: Whisper encoder, weights outside the library"
  python3 bench/aot_loader_probe.py --device "$DEVICE" --models "$MODELS" --out "$OUT/probe_whisper.json" \
    --only "$WHISPER_PROBES"
fi

flags=$(build_flags)
if wants build && [[ "$flags" != none ]]; then
  cxx=()
  [[ "$flags" != default ]] && cxx=("--cxx-flags=$flags")  # "=": a value that starts with "-"
  mark "build-artifacts (weights beside the libraries; g++ flags: $flags)"
  time python3 -m runtime.engine build-artifacts --models "$MODELS" --cache-dir "$CACHE" \
    --device "$DEVICE" "${cxx[@]}" >/tmp/build.txt 2>&1
  tail -25 /tmp/build.txt
fi

if wants aot && ls "$CACHE"/aot/*/manifest.json >/dev/null 2>&1; then
  mark "AOT cold starts, minimal env"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --probe-timeout 75 \
    --states aot,aot,aot,aot_no_graphs --minimal-env ${MENV:-/tmp/menv} --probes-in-minimal-env \
    --importtime --imports --out "$OUT/cs_aot_minimal.json" | grep --line-buffered '^{"cold_start"'
fi

if wants eager; then
  mark "eager cold starts, full image"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$EAGER_CACHE" --probe-timeout 120 \
    --states eager_uncached,eager_cached --importtime --imports \
    --out "$OUT/cs_eager_full.json" | grep --line-buffered '^{"cold_start"'
  mark "eager cold starts, minimal env"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$EAGER_CACHE" --probe-timeout 120 \
    --states eager_cached,eager_cached --minimal-env ${MENV:-/tmp/menv}2 --probes-in-minimal-env \
    --importtime --out "$OUT/cs_eager_minimal.json" | grep --line-buffered '^{"cold_start"'
fi

if wants compare && ls "$CACHE"/aot/*/manifest.json >/dev/null 2>&1; then
  mark "AOT against eager in one process (speed, PSNR)"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --states "" \
    --compare unet_graph,no_graphs --out "$OUT/compare.json" | grep --line-buffered -E '^\{"(eager|unet_graph|no_graphs)"'
fi
# Last: a package that fails to load is removed (the engine rebuilds it on its next start).
if wants aot && ls "$CACHE"/aot/*/manifest.json >/dev/null 2>&1; then
  mark "AOT cold start, full image"
  python3 bench/coldstart.py --device "$DEVICE" --models "$MODELS" --cache-dir "$CACHE" --probe-timeout 75 \
    --states aot --importtime --out "$OUT/cs_aot_full.json" | grep --line-buffered '^{"cold_start"'
fi
mark "done"
