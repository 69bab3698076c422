"""The engine's command line: render one video locally, or write random weights.

python -m runtime.engine render --avatar A --audio B --out C.mp4 [--models DIR]
python -m runtime.engine contact-sheet --prepared P --audio B --out C.png [--models DIR]
python -m runtime.engine make-weights DIR [--tiny]
python -m runtime.engine build-artifacts --models DIR [--max-autotune vae_decoder]
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.engine.encoder_presets import DEFAULT_PRESET, X264_PRESETS

DEFAULT_MODELS_DIR = Path("models")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musetalk", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_render(commands.add_parser("render", help="render one lip-synced mp4"))
    _add_contact_sheet(
        commands.add_parser("contact-sheet", help="PNG of a few frames' crop, mask, face, result")
    )
    _add_make_weights(commands.add_parser("make-weights", help="write random weights"))
    _add_build_artifacts(
        commands.add_parser("build-artifacts", help="build the AOTInductor packages ahead")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


def render_main() -> int:
    """Console script `musetalk-render`."""
    return main(["render", *sys.argv[1:]])


def make_weights_main() -> int:
    """Console script `musetalk-make-weights`."""
    return main(["make-weights", *sys.argv[1:]])


def _add_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--avatar", type=Path, required=True, help="avatar video or image")
    parser.add_argument("--audio", type=Path, required=True, help="speech audio")
    parser.add_argument("--out", type=Path, required=True, help="output .mp4")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="models dir")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--bbox-shift", type=int, default=0)
    parser.add_argument("--extra-margin", type=int, default=10)
    parser.add_argument("--fps", type=int, default=25, help="frame rate of a still-image avatar")
    parser.add_argument("--blend-mode", choices=["jaw", "raw", "neck"], default="jaw")
    parser.add_argument(
        "--mask-blur",
        choices=["offline", "realtime"],
        default="offline",
        help="blend-mask blur: the official offline script's kernel (k = 0.05 x crop side, "
        "default) or its realtime script's (0.1 x, softer seam)",
    )
    parser.add_argument("--no-skip-silence", action="store_true", help="generate every frame")
    parser.add_argument(
        "--preset",
        choices=X264_PRESETS,
        default=DEFAULT_PRESET,
        help=f"libx264 preset (default {DEFAULT_PRESET})",
    )
    parser.add_argument("--contact-sheet", type=Path, help="also write the contact sheet PNG")
    parser.set_defaults(run=_render)


def _add_contact_sheet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prepared",
        type=Path,
        required=True,
        help="a prepared avatar, as the worker's avatar cache holds it (for a media file: "
        "render --contact-sheet)",
    )
    parser.add_argument("--audio", type=Path, required=True, help="speech audio")
    parser.add_argument("--out", type=Path, required=True, help="output .png")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="models dir")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--no-skip-silence", action="store_true", help="as the render had it")
    parser.add_argument("--frames", type=int, default=4, help="columns (frames) on the sheet")
    parser.set_defaults(run=_contact_sheet)


def _add_make_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path)
    parser.add_argument("--tiny", action="store_true", help="small configs for CPU tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_make_weights)


def _add_build_artifacts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="models dir")
    parser.add_argument("--cache-dir", type=Path, help="default: the weight cache's directory")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    add_max_autotune_option(parser)
    parser.add_argument(
        "--cxx-flags",
        default=None,
        help="extra g++ flags for the generated libraries, as one word: --cxx-flags='-O2 -g' "
        "('' for none; default: $MUSETALK_AOT_CXX_FLAGS, else -fvisibility-inlines-hidden)",
    )
    parser.add_argument(
        "--prepare-sizes",
        default=None,
        metavar="HxW,...",
        help="also preparation's packages (aot_prepare): the VAE encoder and S3FD for these "
        "frame sizes, HEIGHTxWIDTH ('' for none; default on CUDA: 720p and 1080p both ways and "
        "the sample avatar's 1216x704; on CPU none)",
    )
    parser.add_argument(
        "--face-dtype", default=None, help="the face models' dtype for S3FD (default: the engine's)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.set_defaults(run=_build_artifacts)


def add_max_autotune_option(parser: argparse.ArgumentParser) -> None:
    """`--max-autotune`, shared by `build-artifacts` and the worker's `publish_aot`."""
    from runtime.engine.aot_build import AUTOTUNED_AHEAD

    parser.add_argument(
        "--max-autotune",
        default=",".join(AUTOTUNED_AHEAD),
        metavar="MODELS",
        help="comma-separated models to build with Inductor's max_autotune (unet, vae_decoder, "
        "whisper_encoder; '' for none): faster kernels, a longer build "
        "(default: %(default)s)",
    )


def _build_artifacts(args: argparse.Namespace) -> int:
    """Build the packages `MuseTalkEngine.load(compile_models=True)` loads, for this card."""
    import shutil

    import torch

    from runtime.engine import aot, aot_build
    from runtime.engine.batch_sizes import static_batch_size
    from runtime.engine.layout import ModelsLayout
    from runtime.engine.weight_cache import default_cache_dir

    layout = ModelsLayout(args.models)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else None
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    autotuned = [name for name in args.max_autotune.split(",") if name]
    unknown = sorted(set(autotuned) - set(aot.MODELS))
    if unknown:
        print(f"--max-autotune: unknown models {unknown} (of {aot.MODELS})", file=sys.stderr)
        return 2
    cache_dir = args.cache_dir or default_cache_dir(args.models)
    key = aot.AotKey.for_models(layout, device, dtype, static_batch_size(device, dtype))
    existing = aot.find_packages(cache_dir, key)
    if existing is not None and args.force:
        shutil.rmtree(existing)
        existing = None
    if existing is not None:
        print(json.dumps({"directory": str(existing), "built": False}))
        return 0
    report = aot_build.build_packages(
        layout,
        cache_dir,
        key,
        device,
        dtype,
        prepare=_prepare_spec(args, device),
        inductor_options={name: aot_build.autotune_options() for name in autotuned},
        compiler_flags=(
            shlex.split(args.cxx_flags)
            if args.cxx_flags is not None
            else aot_build.compiler_flags_from_env()
        ),
    )
    summary = {"directory": str(report.directory), "built": True, "key": key.__dict__}
    print(json.dumps({**summary, "build_s": report.seconds}, indent=2))
    return 0


def _prepare_spec(args: argparse.Namespace, device: Any) -> Any:
    """`--prepare-sizes` / `--face-dtype` as an `aot_prepare.PrepareSpec`, or None."""
    import torch

    from runtime.engine import aot_prepare
    from runtime.engine.avatar_preparation import PREPARE_CHUNK_FRAMES
    from runtime.engine.faces.locator import LOCATE_BATCH
    from runtime.engine.faces.precision import resolve_face_dtype

    if args.prepare_sizes is None and device.type != "cuda":
        return None  # by default built for CUDA preparation only
    sizes = (
        aot_prepare.DEFAULT_SIZES
        if args.prepare_sizes is None
        else aot_prepare.parse_sizes(args.prepare_sizes)
    )
    face_dtype = getattr(torch, args.face_dtype) if args.face_dtype else None
    return aot_prepare.PrepareSpec(
        face_dtype=resolve_face_dtype(face_dtype, device),
        batch=PREPARE_CHUNK_FRAMES,
        s3fd_batch=LOCATE_BATCH,
        sizes=sizes,
    )


def _render(args: argparse.Namespace) -> int:
    import torch

    from runtime.engine.engine import MuseTalkEngine
    from runtime.engine.engine_contract import EngineError
    from runtime.engine.layout import ModelsLayout
    from runtime.engine.options import AvatarOptions, RenderOptions

    missing = ModelsLayout(args.models).missing_files()
    if missing:
        print(f"models directory {args.models} is incomplete; missing:", file=sys.stderr)
        for path in missing:
            print(f"  {path}", file=sys.stderr)
        return 2
    device = torch.device(args.device) if args.device else None
    engine = MuseTalkEngine.load(args.models, device, encoder_preset=args.preset)
    if engine.weights == "random":
        print(
            "NOTE: these are RANDOM weights from make-weights: the video shows the pipeline "
            "working, not a real lip sync.",
            file=sys.stderr,
        )
    try:
        started = time.perf_counter()
        avatar = engine.prepare(
            args.avatar,
            AvatarOptions(
                bbox_shift=args.bbox_shift,
                extra_margin=args.extra_margin,
                fps=args.fps,
                blend_mode=args.blend_mode,
                mask_blur=args.mask_blur,
            ),
        )
        prepared_s = time.perf_counter() - started
        rendered = engine.speak(
            avatar,
            args.audio,
            args.out,
            options=RenderOptions(skip_silence=not args.no_skip_silence),
            batch_size=args.batch_size,
        )
    except EngineError as error:
        print(f"{error.failure}: {error.message}", file=sys.stderr)
        return 1
    if args.contact_sheet is not None:
        from runtime.engine.contact_sheet import write_contact_sheet

        found = write_contact_sheet(
            engine, avatar, args.audio, args.contact_sheet, skip_silence=not args.no_skip_silence
        )
        print(f"contact sheet {args.contact_sheet}: {found.verdict}", file=sys.stderr)
    summary = {
        "out": str(args.out),
        "frames": rendered.frames,
        "fps": rendered.fps,
        "frames_skipped": rendered.frames_skipped,
        "weights": rendered.weights,
        "batch_size": rendered.batch_size,
        "sync_confidence": rendered.sync_confidence,
        "prepare_ms": {k: round(v, 1) for k, v in avatar.timings_ms.items()},
        "prepare_total_s": round(prepared_s, 2),
        "speak_ms": {k: round(v, 1) for k, v in rendered.timings_ms.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def _contact_sheet(args: argparse.Namespace) -> int:
    """Prints the findings as JSON (the verdict says why the lips move or not)."""
    import torch

    from runtime.engine.contact_sheet import write_contact_sheet
    from runtime.engine.engine import MuseTalkEngine
    from runtime.engine.engine_contract import EngineError, PreparedAvatarFormatError

    device = torch.device(args.device) if args.device else None
    engine = MuseTalkEngine.load(args.models, device)
    try:
        avatar = engine.load_prepared(args.prepared.read_bytes())
        found = write_contact_sheet(
            engine,
            avatar,
            args.audio,
            args.out,
            skip_silence=not args.no_skip_silence,
            columns=args.frames,
        )
    except (EngineError, PreparedAvatarFormatError) as error:
        print(f"contact-sheet: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), **found.to_json()}, indent=2))
    return 0


def _make_weights(args: argparse.Namespace) -> int:
    from runtime.engine.random_weights import make_weights

    layout = make_weights(args.directory, tiny=args.tiny, seed=args.seed)
    size = "tiny" if args.tiny else "full-size"
    print(f"wrote RANDOM {size} weights to {layout.root} (marked in {layout.marker.name})")
    missing = layout.missing_files()
    if missing:
        print("not written (faces/sync packages unavailable):", file=sys.stderr)
        for path in missing:
            print(f"  {path}", file=sys.stderr)
    return 0
