"""libx264 presets on this host's CPU, through the segment encoder's settings: frames/s, bits and
Y-PSNR of each, and each one's ratio to a baseline preset measured in the same run.

Where the host has no NVENC (an H100's), x264 on the CPU sets the worker's pace, so the preset
trades encoder speed for bits. Every preset encodes the same frames (the sample avatar's, in the
I420 the writer's BT.601 conversion makes, converted once before any timing) with what a
segment gets: `VideoWriter` with `segments.ENCODER_THREADS` x264 threads (`--threads`),
`segments.X264_OPTIONS`, CRF 18, MPEG-TS. Frames/s is the median of `--runs` encodes, from the
writer's start to its closed file; Mbit/s is the file's size over the clip's duration at its fps;
Y-PSNR is of the decoded file's luma against the source's, over all frames' pixels at once.

    python bench/encoder_presets.py [--frames 250] [--runs 3] \
        [--presets ultrafast,superfast,veryfast,faster] [--baseline veryfast] [--out report.txt]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.host_info import host
from runtime.engine import segments
from runtime.engine.avatar_reader import AvatarReader
from runtime.engine.encoder_presets import X264_PRESETS
from runtime.engine.media import VideoWriter
from runtime.engine.yuv import I420Frame, to_i420

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AVATAR = ROOT / "examples" / "media" / "yongen.mp4"
CRF = 18


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, default=SAMPLE_AVATAR, help="video or image")
    parser.add_argument("--frames", type=int, default=250, help="frames encoded (source cycled)")
    parser.add_argument("--presets", default="ultrafast,superfast,veryfast,faster")
    parser.add_argument("--baseline", default="veryfast", help="the preset the ratios are to")
    parser.add_argument("--runs", type=int, default=3, help="encodes per preset (median taken)")
    parser.add_argument("--threads", type=int, default=segments.ENCODER_THREADS)
    parser.add_argument("--out", type=Path, help="also write the report (command, host, table)")
    args = parser.parse_args(argv)
    args.presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    unknown = [name for name in [*args.presets, args.baseline] if name not in X264_PRESETS]
    if unknown:
        parser.error(f"--presets/--baseline: not x264 presets: {unknown}")
    if args.baseline not in args.presets:
        args.presets.append(args.baseline)
    if args.frames < 1 or args.runs < 1 or args.threads < 1:
        parser.error("--frames, --runs and --threads must be at least 1")
    return args


def source_frames(avatar: Path, count: int) -> tuple[list[I420Frame], float]:
    """`count` I420 frames of `avatar` (its frames repeated if it has fewer) and its fps."""
    reader = AvatarReader(avatar, still_fps=25)
    distinct: list[I420Frame] = []
    for frame in reader.frames():  # read to the end: the reader knows the fps then
        if len(distinct) < count:
            distinct.append(to_i420(frame))
    return list(islice(cycle(distinct), count)), reader.fps


def encode(frames: list[I420Frame], fps: float, preset: str, threads: int, out: Path) -> float:
    """Seconds to encode `frames` into the MPEG-TS `out` as a segment's writer does."""
    width, height = frames[0].size
    started = time.perf_counter()
    with VideoWriter(
        out,
        width=width,
        height=height,
        fps=fps,
        audio_path=None,
        preset=preset,
        crf=CRF,
        threads=threads,
        x264_options=segments.X264_OPTIONS,
    ) as writer:
        for frame in frames:
            writer.write(frame)
    return time.perf_counter() - started


def luma_psnr(encoded: Path, frames: list[I420Frame]) -> float:
    """Y-PSNR (dB) of the decoded file against the source frames, from the MSE of all pixels."""
    squared, pixels, decoded = 0.0, 0, 0
    with av.open(str(encoded)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            height = frame.height
            luma = frame.to_ndarray(format="yuv420p")[:height].astype(np.float64)
            source = frames[index].data[:height].astype(np.float64)
            squared += float(np.square(luma - source).sum())
            pixels += luma.size
            decoded = index + 1
    if decoded != len(frames):
        raise RuntimeError(f"{encoded.name}: decoded {decoded} frames of {len(frames)}")
    mse = squared / pixels
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(args: argparse.Namespace, frames: list[I420Frame], fps: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="encoder-presets-") as work:
        for preset in args.presets:
            out = Path(work) / f"{preset}.ts"
            seconds = [encode(frames, fps, preset, args.threads, out) for _ in range(args.runs)]
            runs_fps = [len(frames) / s for s in seconds]
            rows.append(
                {
                    "preset": preset,
                    "frames_per_s": round(statistics.median(runs_fps), 1),
                    "runs_frames_per_s": [round(value, 1) for value in runs_fps],
                    "mbit_per_s": round(out.stat().st_size * 8 / (len(frames) / fps) / 1e6, 3),
                    "bytes": out.stat().st_size,
                    "y_psnr_db": round(luma_psnr(out, frames), 2),
                }
            )
    base = next(row for row in rows if row["preset"] == args.baseline)
    for row in rows:
        row["speed_vs_baseline"] = round(row["frames_per_s"] / base["frames_per_s"], 2)
        row["bits_vs_baseline"] = round(row["bytes"] / base["bytes"], 2)
    return rows


def table(rows: list[dict[str, Any]], baseline: str) -> str:
    lines = [
        f"{'preset':<10} {'frames/s':>9} {'Mbit/s':>7} {'Y-PSNR dB':>10}"
        f" {'speed/' + baseline:>15} {'bits/' + baseline:>14}"
    ]
    for row in rows:
        lines.append(
            f"{row['preset']:<10} {row['frames_per_s']:>9.1f} {row['mbit_per_s']:>7.2f}"
            f" {row['y_psnr_db']:>10.2f} {row['speed_vs_baseline']:>15.2f}"
            f" {row['bits_vs_baseline']:>14.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    frames, fps = source_frames(args.avatar, args.frames)
    width, height = frames[0].size
    report = {
        "command": shlex.join(["python", "bench/encoder_presets.py", *(argv or sys.argv[1:])]),
        "host": host(),
        "avatar": args.avatar.name,
        "frames": len(frames),
        "size": f"{width}x{height}",
        "fps": fps,
        "threads": args.threads,
        "crf": CRF,
        "x264_options": segments.X264_OPTIONS,
        "container": "mpegts",
        "runs": args.runs,
        "baseline": args.baseline,
        "presets": measure(args, frames, fps),
    }
    text = table(report["presets"], args.baseline)
    print(text)
    print(json.dumps(report), flush=True)
    if args.out:
        header = [f"$ {report['command']}", f"host: {json.dumps(report['host'])}"]
        args.out.write_text("\n".join([*header, "", text, "", json.dumps(report, indent=2)]) + "\n")
    return report


if __name__ == "__main__":
    main()
