"""The speak benchmark's command line: every flag, its default and the checks across flags."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from runtime.engine import segments as segmented
from runtime.engine import speak_pipeline
from runtime.engine.engine_contract import SEGMENT_FRAMES

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    """The parsed flags, after the checks that span more than one flag."""
    parser = _parser(description)
    args = parser.parse_args(argv)
    if not set(args.split_tails.split(",")) <= {"taper", "whole"}:
        parser.error(f"--split-tails: taper and/or whole, not {args.split_tails!r}")
    if args.compiled_only and not args.compile:
        parser.error("--compiled-only needs --compile (it keeps only the compiled rows)")
    return args


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", type=Path, required=True, help="written if missing")
    parser.add_argument("--tiny", action="store_true", help="tiny weights (CPU smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float16", "float32"], default=None)
    parser.add_argument("--avatar", type=Path, default=MEDIA / "yongen.mp4")
    parser.add_argument("--audio", type=Path, default=MEDIA / "eng.wav")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio used for throughput")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="20,64", help="engine batches to render with")
    parser.add_argument("--memory-batches", default="8,16,32,64,96,128")
    parser.add_argument("--presets", default="veryfast,superfast", help="libx264 presets")
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 1 run, no extras")
    parser.add_argument("--variants", action="store_true", help="channels_last, row decode")
    parser.add_argument("--compile", action="store_true", help="also render with torch.compile")
    parser.add_argument(
        "--compile-modes",
        default="default",
        help="torch.compile modes to render with (reduce-overhead = CUDA graphs)",
    )
    parser.add_argument("--cache-dir", type=Path, help="weight/compile cache (default: beside)")
    parser.add_argument("--encoder-frames", type=int, default=500)
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="also render the last compile mode with torch.backends.cudnn.benchmark on",
    )
    parser.add_argument(
        "--cold-compile",
        action="store_true",
        help="also time torch.compile starts: from nothing, then from its cached artifacts",
    )
    parser.add_argument(
        "--encoder-only",
        metavar="COUNTS",
        help="only measure 1..n mp4 writers running at once, e.g. 1,2,3 (no models)",
    )
    parser.add_argument(
        "--decoder-modes", help="also time the decoder compiled in these modes, e.g. default"
    )
    _writer_flags(parser)
    parser.add_argument(
        "--skip-cold-start", action="store_true", help="no fresh-process cold start probes"
    )
    parser.add_argument(
        "--compiled-only",
        action="store_true",
        help="only the plain baseline and the compiled rows (no eager rows, encoder or PSNR "
        "extras): the short run for a compiled-path change",
    )
    parser.add_argument(
        "--pipeline-depths",
        default="",
        metavar="DEPTHS",
        help="compiled rows at each `pipeline_depth` (batches in flight), e.g. 1,2; and the GPU "
        "path alone (no compose, no encoder) at each",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="also the PSNR of bfloat16 models against fp32"
    )
    parser.add_argument(
        "--cold-states",
        default="eager_uncached,eager_cached",
        help="fresh-process cold starts to time (bench/coldstart.py STATES; aot_build,aot for "
        "the AOT packages, minutes to build)",
    )
    parser.add_argument(
        "--official",
        type=Path,
        help="a TMElyralab/MuseTalk checkout: also run its realtime loop (bench/official_loop.py) "
        "in this run, and give every row's ratio to it",
    )
    parser.add_argument("--official-runs", type=int, default=5, help="renders of the official loop")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    return parser


def _writer_flags(parser: argparse.ArgumentParser) -> None:
    """How the rows through segment encoders and `speak`'s own split are shaped."""
    parser.add_argument(
        "--segment-encoders",
        default="",
        metavar="COUNTS",
        help="also render through segment encoders, e.g. 1,2,3 (the worker's path; compiled "
        "engines also through speak's own split of a long clip)",
    )
    parser.add_argument(
        "--segment-threads",
        default=str(segmented.ENCODER_THREADS),
        help="x264 threads per segment encoder: the first for every row, the others for compiled "
        "rows at the first preset",
    )
    parser.add_argument(
        "--segment-frames",
        default=str(SEGMENT_FRAMES),
        metavar="FRAMES",
        help="frames per segment of the worker's path (its MUSETALK_SEGMENT_FRAMES), e.g. "
        "125,128 (each a row; 128 keeps every batch of 64 whole)",
    )
    parser.add_argument(
        "--split-frames",
        default=str(speak_pipeline.SPLIT_SEGMENT_FRAMES),
        metavar="FRAMES",
        help="frames per segment when speak splits a clip itself, e.g. 125,32 (each a row)",
    )
    parser.add_argument(
        "--split-tails",
        default="taper",
        help="the last segment of speak's split: taper (halving pieces, the engine's default) "
        "and/or whole, e.g. taper,whole (each a row)",
    )
