"""The mp4 writers alone, fed frames as fast as they take them: one writer per x264 thread type,
several at once (the ceiling of parallel segment encoders), and the `--encoder-only` mode."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.speak_setup import write_clip
from runtime.engine import segments as segmented
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.media import VideoWriter


def encoder_only(args: argparse.Namespace) -> dict[str, Any]:
    """`--encoder-only COUNTS`: 1..n mp4 writers at once per preset, no models written."""
    work = Path(tempfile.mkdtemp(prefix="speak-bench-"))
    clip = write_clip(args.audio, args.seconds, work / "speech.wav")
    result = {
        "encoders_at_once_fps": {
            f"{count} x {preset}": round(
                parallel_encoder_fps(
                    args.avatar, clip, work, preset, args.encoder_frames, int(count)
                ),
                1,
            )
            for preset in args.presets.split(",")
            for count in args.encoder_only.split(",")
        },
        "frames_per_encoder": args.encoder_frames,
        "host_cpus": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def encoder_figures(
    args: argparse.Namespace,
    avatar: PreparedAvatar,
    audio: Path,
    work: Path,
    segment_counts: Sequence[int],
    segment_threads: Sequence[int],
    report: dict[str, Any],
) -> None:
    """The report's encoder sections: the mp4 writer alone per preset and thread type and, with
    `--segment-encoders`, segment encoders alone per thread count and count at once."""
    presets = args.presets.split(",")
    report["encoder_only_fps"] = {
        f"{preset} {threads} threads": round(
            encoder_fps(avatar, audio, work / "enc.mp4", preset, args.encoder_frames, threads),
            1,
        )
        for preset in presets
        for threads in ("SLICE", "FRAME")
    }
    if segment_counts:
        # Segment encoders alone (the segments' settings), fed as fast as they take frames.
        report["segment_encoders_at_once_fps"] = {
            f"{count} x {threads} threads": round(
                parallel_encoder_fps(
                    args.avatar, audio, work, presets[0], args.encoder_frames, count, threads
                ),
                1,
            )
            for threads in sorted({*segment_threads, 4, 6, 8})
            for count in segment_counts
        }


def encoder_fps(
    avatar: PreparedAvatar, audio: Path, out: Path, preset: str, frames: int, thread_type: str
) -> float:
    """The mp4 writer alone (BGR -> I420 + libx264 + mux), fed frames as fast as it takes."""
    height, width = avatar.frames.shape[1:3]
    start = time.perf_counter()
    with VideoWriter(
        out,
        width=width,
        height=height,
        fps=avatar.fps,
        audio_path=audio,
        preset=preset,
        thread_type=thread_type,
    ) as writer:
        for i in range(frames):
            writer.write(avatar.frames[avatar.cycle_index(i)])
    return frames / (time.perf_counter() - start)


def parallel_encoder_fps(
    avatar_path: Path,
    audio: Path,
    work: Path,
    preset: str,
    frames: int,
    encoders: int,
    threads: int | None = None,
) -> float:
    """Frames/s of `encoders` mp4 writers running at once (each its own segment of `frames`),
    fed as fast as they take frames: the ceiling parallel segment encoders could reach. With
    `threads`, each is a segment encoder (that many x264 threads, the segments' x264 options,
    MPEG-TS, no audio); else x264 picks its threads and the file is an mp4 with audio."""
    video = decode_avatar(avatar_path, still_fps=25)
    source = np.stack(video.frames)
    height, width = source.shape[1:3]

    def encode(segment: int) -> None:
        with VideoWriter(
            work / (f"segment-{segment}.ts" if threads else f"segment-{segment}.mp4"),
            width=width,
            height=height,
            fps=video.fps,
            audio_path=None if threads else audio,
            preset=preset,
            threads=threads,
            x264_options=segmented.X264_OPTIONS if threads else None,
        ) as writer:
            for i in range(frames):
                writer.write(source[i % len(source)])

    start = time.perf_counter()
    with ThreadPoolExecutor(encoders, thread_name_prefix="segment") as pool:
        list(pool.map(encode, range(encoders)))
    return encoders * frames / (time.perf_counter() - start)
