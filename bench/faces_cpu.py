"""Per-frame CPU cost of the face stages on the sample video, with seeded random weights.

Usage: python bench/faces_cpu.py [--frames 4] [--threads 2] [--seed 0] [--device cuda] [--syncnet]
Random weights cost the same as the official ones (same architectures, same sizes), except the
S3FD post-processing, which sees far more candidates with random weights than with real ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import torch

from runtime.engine.faces import FaceLocator, FaceParser
from runtime.engine.faces.random_weights import (
    write_random_bisenet,
    write_random_dwpose,
    write_random_s3fd,
)
from runtime.engine.sync.random_weights import write_random_syncnet
from runtime.engine.sync.scorer import SyncScorer

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"


REPEATS = 2  # best of: on a shared machine the minimum is the least disturbed reading

T = TypeVar("T")


def per_frame(label: str, frames: int, fn: Callable[[], T]) -> T:
    """Wall time and process CPU time (all threads) per frame, best of REPEATS each.

    CPU time barely depends on other load, so on a shared machine it is the steadier number:
    wall time on N dedicated cores is about CPU time / N.
    """
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"{label:<36} wall {min(walls) / frames * 1000:7.0f} ms/frame"
        f"  cpu {min(cpus) / frames * 1000:7.0f} ms/frame  ({frames} frames)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--syncnet", action="store_true", help="also time the full-size SyncNet")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device(args.device)
    with av.open(str(MEDIA / "yongen.mp4")) as container:
        frames = [
            f.to_ndarray(format="bgr24")
            for _, f in zip(range(args.frames), container.decode(video=0), strict=False)
        ]
    print(
        f"frames {frames[0].shape[1]}x{frames[0].shape[0]} (WxH), device {args.device}, "
        f"torch threads {args.threads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        write_random_s3fd(models / "s3fd" / "s3fd-619a316812.pth", args.seed)
        write_random_dwpose(models / "dwpose" / "dw-ll_ucoco_384.pth", args.seed)
        write_random_bisenet(models / "face-parse-bisent", args.seed)
        locator = FaceLocator.load(models, cpu)
        n = len(frames)
        locator.locate(frames[:1], bbox_shift=0, extra_margin=10)  # warm-up (allocators, cuDNN)
        per_frame(
            "S3FD (full frame, batch 1)", n, lambda: locator.detector.detect(frames, batch_size=1)
        )
        per_frame(
            "DWPose (flip test, batch 4)",
            n,
            lambda: locator.landmarker.face_landmarks(frames, batch_size=4),
        )
        boxes = per_frame(
            "FaceLocator.locate (batch 4)",
            n,
            lambda: locator.locate(frames, bbox_shift=0, extra_margin=10, batch_size=4),
        )
        print("boxes:", boxes)
        face_parser = FaceParser.load(models, cpu)
        real = [b for b in boxes if b is not None]
        if real:
            fixed = [real[0]] * n
            per_frame(
                "BiSeNet blend masks (batch 4)",
                n,
                lambda: face_parser.blend_masks(frames, fixed, batch_size=4),
            )
        if args.syncnet:
            write_random_syncnet(
                models / "syncnet" / "latentsync_syncnet.pt", args.seed, tiny=False
            )
            scorer = SyncScorer.load(models, cpu)
            faces = np.zeros((32, 256, 256, 3), np.uint8)
            audio = np.zeros(int(32 / 25 * 16000), np.float32)
            per_frame(
                "SyncNet score (full size, step 4)", 32, lambda: scorer.score(faces, audio, 25.0)
            )


if __name__ == "__main__":
    main()
