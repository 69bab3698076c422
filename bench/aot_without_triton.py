"""Whether the worker's AOT engine runs without Triton installed: the question behind the
worker image's lock (Triton is about 200 MB of wheel; the image has no C compiler, so Triton
could never build a kernel there anyway).

Run after `python -m runtime.engine build-artifacts --models M --cache-dir C`. Every import of
`triton` in this process fails as it would in an image without the package; the engine then
loads the packages from C and renders a short clip on the sample avatar. The report says whether
the packages loaded (no fallback to eager, no rebuild) and the render's frames/s.

    python bench/aot_without_triton.py --models M --cache-dir C [--seconds 4] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "examples" / "media"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True, help="where the packages are")
    parser.add_argument("--seconds", type=float, default=4.0, help="speech rendered")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    # As without the package: `import triton` raises ModuleNotFoundError and
    # `importlib.util.find_spec("triton")` returns None (torch's CUDA init asks it).
    sys.modules["triton"] = None  # type: ignore[assignment]
    report: dict[str, Any] = {"triton_blocked": True}
    try:
        report |= render_without_triton(args)
    except Exception as error:  # the report is the point: say what broke
        report["error"] = f"{type(error).__name__}: {error}"
        report["traceback_tail"] = traceback.format_exc().splitlines()[-12:]
    print(json.dumps(report, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report.get("aot_loaded") and "error" not in report else 1


def render_without_triton(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from bench.speak_setup import load_engine, prepared_avatar, write_clip
    from runtime.engine.options import RenderOptions

    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    engine = load_engine(args.models, device, None, compile_mode="aot", cache_dir=args.cache_dir)
    load_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "aot_loaded": bool(engine.aot) and "aot_build" not in engine.load_timings_ms,
        "load_s": round(load_s, 2),
        "load_timings_ms": {k: round(v, 1) for k, v in engine.load_timings_ms.items()},
    }
    work = Path(tempfile.mkdtemp(prefix="aot-no-triton-"))
    clip = write_clip(MEDIA / "eng.wav", args.seconds, work / "speech.wav")
    avatar = prepared_avatar(engine, MEDIA / "yongen.mp4")
    options = RenderOptions(skip_silence=False)
    fps = []
    for _ in range(2):  # the first render warms the packages' kernels
        begun = time.perf_counter()
        rendered = engine.speak(avatar, clip, work / "out.mp4", options=options)
        fps.append(rendered.frames / (time.perf_counter() - begun))
    result["frames"] = rendered.frames
    result["fps_second_render"] = round(fps[-1], 1)
    result["output_bytes"] = (work / "out.mp4").stat().st_size
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
