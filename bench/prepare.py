"""Preparation benchmark: our `MuseTalkEngine.prepare` against a per-frame path shaped like the
official code, on the same avatar and the same random weights, in one run.

The avatar is the sample video (`examples/media/yongen.mp4`, 1216x704 at 25 fps) looped to
`--seconds` (30 s = 750 frames by default). Every path decodes it the same way (PyAV), then

* **ours**, in one or more `--variants` `MODE:DTYPE[:OPS][+FLAG...]`: MODE `pipelined` (chunks
  of frames through locate / encode / parse stages overlapped on threads and CUDA streams,
  `preparing.py`), `sequential` (the same chunks, stage after stage: per-stage times that do
  not overlap) or `serial` (the default on CUDA: stage after stage on one stream, the
  decoding on its own thread ahead of them); DTYPE the face models' (S3FD, DWPose, BiSeNet;
  the VAE is the engine's); OPS `device` (each chunk uploaded once; the models' pre- and
  post-processing as batched tensor work there, the default on CUDA) or `host`
  (OpenCV/PIL/mmpose per image, the default on CPU);
  FLAGs `onepass` (DWPose's crops and mirror as one batch), `vae` (the VAE encoder
  channels-last in fixed batches), `compile` (S3FD and the VAE encoder compiled; the
  variant's warm-up time includes the compilation), see `configure`;
* **per-frame** (the official order, `scripts/realtime_inference.py` preparation, fp32 face
  models as upstream): for each frame DWPose then S3FD on that one frame, then for each frame
  the crop and two VAE encodes (masked, then reference) of batch 1, then for each frame its
  BiSeNet parse and mask;
* **official** (with `--official DIR`, a TMElyralab/MuseTalk checkout): upstream's own
  `Avatar.prepare_material` of `scripts/realtime_inference.py` run by its code on the same
  clip and weights (`bench/official_prepare.py`: PNG frames, per-frame DWPose and S3FD, VAE
  encodes, BiSeNet masks over the whole cycle, its disk writes; VAE halved on CUDA as its
  `__main__` does), timed per stage from outside; every path gets its ratio to upstream's total
  and to its compute alone (total less its PNG and pickle I/O), per frame (upstream prepares
  the clip's first `--official-frames`, default 25: its S3FD post-processing takes seconds per
  frame on random weights), and its boxes against upstream's.

It prints per-stage ms/frame, total seconds, the speed-up of each variant over the per-frame
path, and how far each variant's results agree with it: S3FD boxes, DWPose landmarks, the face
boxes, the 256 crops where boxes differ, latents, masks. In `pipelined` variants the stage
times overlap (each is that stage's busy time); their sum exceeds the total. Weights:
full-size random VAE and face models (`make-weights`' writers); the UNet and Whisper are written
tiny because preparation does not run them. `--smoke` is a CPU check of the script itself:
tiny VAE, a downscaled 2-frame clip, fp32.

    python bench/prepare.py --models /tmp/prep-models --out result.json       # GPU
    python bench/prepare.py --models /tmp/prep-models --variants \
        pipelined:float32:device,pipelined:float32:host --profile prof/     # + thread samples
    python bench/prepare.py --smoke --models /tmp/prep-tiny --out smoke.json   # CPU smoke
    python bench/prepare.py --models /tmp/prep-models --official .bench/official/MuseTalk

This file runs the sections in order; each is a `bench/prepare_*.py` module (options, setup,
variants, paths, agreement, runs, profile, report); upstream's run is `bench/official_prepare.py`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` when run as a script

from bench.prepare_options import parse_args
from bench.prepare_report import header, print_report
from bench.prepare_runs import PrepareRun
from bench.prepare_setup import load_models
from bench.prepare_variants import default_variants


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
    device = torch.device(args.device)
    variants = args.variants or default_variants(device)
    engine, faces = load_models(
        args.models, device, (dtype for _, dtype, _, _ in variants), tiny_vae=args.smoke
    )
    run = PrepareRun(
        args, engine, faces, header(engine, round(args.seconds * 25), smoke=args.smoke)
    )
    with tempfile.TemporaryDirectory() as tmp:
        run.write_clips(Path(tmp))
        run.per_frame_reference()
        run.decode_alone()
        for variant in variants:
            run.variant(*variant)
        if args.official is not None:
            run.official_baseline()
        if args.profile is not None and run.result["variants"]:
            run.profile_last(variants, args.profile)
    print_report(run.result)
    run.save()
    return run.result


if __name__ == "__main__":
    main()
