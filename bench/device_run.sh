#!/usr/bin/env bash
# One device call for the speak and preparation figures (bench/results/2026-12-06-h100*.md):
#   STEPS="setup speak prepare" OFFICIAL=.bench/official/MuseTalk bash bench/device_run.sh
# setup: our wheels (.whl/*.whl, .whl/py.tar.xz, xtcocotools from .whl/src) into /tmp/site;
# speak: bench/speak.py
# with upstream's realtime loop in the same run (OFFICIAL: a TMElyralab/MuseTalk checkout) and the
# compiled rows; prepare: bench/prepare.py with the worker's default, the AOT packages (fp32 and
# fp16 face models) and compile_preparation against the per-frame path and upstream's own
# avatar preparation (OFFICIAL); build: the worker's AOT packages (decoder autotuned, as
# `publish_aot` builds them) where speak's `--compile-modes aot` finds them; notriton: those
# packages loaded and rendered with every `triton` import refused (bench/aot_without_triton.py);
# presets: bench/encoder_presets.py on this host; probes: bench/gpu_path_probes.py on the built
# packages (the UNet autotuned too, and the two models on two streams). The UNet's autotune takes
# longer than one call (over 530 s on an H200): Inductor writes each shape's timings to its local
# autotune cache under /tmp as it goes, so `STEPS=probes` again on the still-warm machine
# continues where the last call stopped.
# Results under $OUT.
set -o pipefail
OUT=${OUT:-/tmp/device-out}
STEPS=${STEPS:-setup speak prepare}
OFFICIAL=${OFFICIAL-.bench/official/MuseTalk}  # set but empty: no official loop
SPEAK_ARGS=${SPEAK_ARGS:-}
BUILD_ARGS=${BUILD_ARGS:-}  # e.g. --prepare-sizes= (speak's packages only)
PROBE_ARGS=${PROBE_ARGS---autotune-unet}  # set but empty: the two-stream probe only
PREPARE_ARGS=${PREPARE_ARGS:-}  # e.g. --official-frames 10
PREPARE_VARIANTS=${PREPARE_VARIANTS:-serial:float32:device+onepass,serial:float32:device+onepass+aot,serial:float16:device+onepass+aot,serial:float16:device+onepass+vae+compile}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site"
begin=$(date +%s)
mark() { echo "== +$(($(date +%s) - begin)) s: $*"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }
mkdir -p "$OUT"

if wants setup && [[ ! -d /tmp/site/diffusers ]]; then
  mark "wheels"
  # .whl: av, diffusers, transformers, soundfile + cffi, soxr, mmengine + addict, termcolor,
  # yapf + platformdirs, mmcv-lite, mmpose + json_tricks, munkres (the device image lacks them).
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  # pure-Python wheels may travel unpacked in one xz tarball (a third of their zips' size)
  if [[ -f .whl/py.tar.xz ]]; then tar -xJf .whl/py.tar.xz -C /tmp/site || exit 1; fi
  if ls .whl/src/*.tar.gz >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
      --target /tmp/site .whl/src/*.tar.gz >/tmp/sdist.txt 2>&1 || tail -5 /tmp/sdist.txt
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader || true
  grep -m1 "model name" /proc/cpuinfo || true
  python3 -c 'import torch, os; print("torch", torch.__version__, "cpus", os.cpu_count(), "load", os.getloadavg())'
fi

if wants build; then
  mark "build: random weights, AOT packages as publish_aot builds them"
  python3 -c 'from pathlib import Path; from bench.speak_setup import write_models; write_models(Path("/tmp/m23"), tiny=False)' || exit 1
  python3 -m runtime.engine build-artifacts --models /tmp/m23 --cache-dir /tmp/c23-aot $BUILD_ARGS 2>&1 \
    | tee "$OUT/build.log" | grep -v -E 'Warning|warn\(' | tail -5
fi

if wants notriton; then
  mark "notriton: the AOT engine with triton imports refused"
  python3 bench/aot_without_triton.py --models /tmp/m23 --cache-dir /tmp/c23-aot \
    --out "$OUT/aot-without-triton.json" 2>&1 | grep -v -E 'Warning|warn\(' | tail -40
fi

if wants probes; then
  mark "probes: the UNet autotuned, the two models on two streams"
  python3 bench/gpu_path_probes.py --models /tmp/m23 --cache-dir /tmp/c23-aot $PROBE_ARGS \
    --out "$OUT/gpu-path-probes${PROBE_ARGS:+-unet}.json" 2>&1 | tee "$OUT/probes.log" | grep -v -E 'Warning|warn\(' | tail -30
fi

if wants presets; then
  mark "presets: x264 presets through the segment encoder's settings"
  python3 bench/encoder_presets.py --frames 400 --out "$OUT/encoder-presets.txt" 2>&1 | head -8
fi

if wants speak; then
  mark "speak: plain, official loop, compiled rows"
  python3 bench/speak.py --models /tmp/m23 --cache-dir /tmp/c23 --avatar examples/media/yongen.mp4 \
    --audio examples/media/eng.wav --seconds 30 --runs 3 --batch-sizes 64 --presets superfast \
    --compile --compile-modes reduce-overhead --pipeline-depths 2 --segment-encoders 2 \
    --split-frames 125 --split-tails taper --memory-batches 64 --encoder-frames 400 \
    --skip-cold-start --compiled-only ${OFFICIAL:+--official "$OFFICIAL" --official-runs 5} $SPEAK_ARGS \
    --out "$OUT/speak.json" 2>&1 | tee "$OUT/speak.log" | grep --line-buffered -E '^\{"(path|fps|batch|pipeline)|^== |Error|error' | cut -c1-400
fi

if wants prepare; then
  mark "prepare: per-frame path, default, AOT packages, compiled, upstream's preparation"
  python3 bench/prepare.py --models /tmp/p23 --variants "$PREPARE_VARIANTS" \
    --official "$OFFICIAL" $PREPARE_ARGS --out "$OUT/prepare.json" 2>&1 | grep --line-buffered -v -E 'Warning|warn\(|^\s*$' | tail -60
fi
mark "done"
