"""libx264's presets and the engine's default, in a module that imports nothing: the worker's
settings and the stack's config validation check a preset without loading PyAV or torch."""

from __future__ import annotations

# x264's presets, fastest first.
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# Where x264 on the host's CPU sets the pace (an H100's host has no NVENC), superfast encoded
# 1.45x as many frames a second as veryfast for 1.33x the bits at the same CRF and a slightly
# higher Y-PSNR (the H100's 16-core host, bench/results/2026-12-07-h100-encoder-presets.txt;
# 1.8x on a 2-core Xeon); the bits are cheap next to the GPU time an encoder-bound render waits
# for.
DEFAULT_PRESET = "superfast"


def check_preset(preset: str, *, name: str = "preset") -> str:
    """`preset` if x264 has it; else a ValueError that names `name` (the field or variable)."""
    if preset not in X264_PRESETS:
        raise ValueError(f"{name} must be one of {', '.join(X264_PRESETS)}; got {preset!r}")
    return preset
