"""Folded upsampling in the VAE decoder: speed and agreement against diffusers' own modules.

Builds the full-size SD VAE (random weights, the official architecture) and times, in the same
process: each of the decoder's three upsampler shapes (nearest 2x + 3x3 conv) as diffusers runs
it, folded into one transposed convolution (`runtime/engine/upsample.py`), and as four 2x2
convolutions (the alternative we did not keep); then the whole decoder eager and compiled, with
and without folding, and the PSNR of the folded decoder's faces against the unfolded one.
Prints medians of `--runs`; writes JSON with `--out`.

    python bench/decoder_fold.py --batch 64 --runs 5 --out fold.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.engine.configs import TINY_VAE_OVERRIDES, VAE_CONFIG
from runtime.engine.latents import images_to_uint8
from runtime.engine.upsample import FoldedUpsampleConv, fold_upsamplers, fold_weight


def timed_ms(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    """Median milliseconds of `runs` calls after two warm-up calls."""
    fn()
    fn()
    samples = []
    for _ in range(runs):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            import time

            began = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def four_phase(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """The same operation as four 2x2 convolutions on the padded small map, interleaved."""
    weight = fold_weight(conv.weight).transpose(0, 1).to(x.dtype)  # [out, in, 4, 4]
    padded = F.pad(x, (1, 1, 1, 1))
    height, width = x.shape[-2:]
    phases = []
    for a in (0, 1):
        row = []
        for b in (0, 1):
            # Output row 2i+a reads padded rows i+a, i+a+1 with kernel rows (3-a, 1-a) of the
            # transposed kernel; likewise for columns.
            kernel = weight[:, :, [3 - a, 1 - a]][:, :, :, [3 - b, 1 - b]]
            window = padded[:, :, a : a + height + 1, b : b + width + 1]
            row.append(F.conv2d(window, kernel, conv.bias))
        phases.append(torch.stack(row, dim=-1))  # [n, o, h, w, 2(b)]
    stacked = torch.stack(phases, dim=3)  # [n, o, h, 2(a), w, 2(b)]
    n, o = stacked.shape[:2]
    return stacked.reshape(n, o, 2 * height, 2 * width)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()


LATENT_SIZE = 32  # the VAE's latent side at 256 x 256 faces


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny VAE (CPU smoke test)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    from diffusers import AutoencoderKL

    config = {**VAE_CONFIG, **(TINY_VAE_OVERRIDES if args.tiny else {})}
    # diffusers' lazy __init__ shows mypy its torch-less placeholder class, not the nn.Module
    model: torch.nn.Module = AutoencoderKL(**config)  # type: ignore[assignment]
    vae = model.to(device=device, dtype=dtype).eval()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch": args.batch,
        "dtype": str(dtype),
        "layers": [],
    }
    with torch.inference_mode():
        report["layers"] = upsampler_rows(vae, args.batch, args.runs, device, dtype)
        decoder_figures(vae, args, device, dtype, report)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return report


def upsampler_rows(
    vae: Any, batch: int, runs: int, device: torch.device, dtype: torch.dtype
) -> list[dict[str, Any]]:
    """Per upsampler of the decoder: ms of diffusers' nearest-2x + conv, of the folded
    transposed convolution and of four 2x2 convolutions, and each one's largest difference."""
    rows = []
    size = LATENT_SIZE
    for block in vae.decoder.up_blocks:
        if block.upsamplers is None:
            continue
        conv = block.upsamplers[0].conv
        x = torch.randn(batch, conv.in_channels, size, size, device=device, dtype=dtype)
        folded = FoldedUpsampleConv(conv)
        original = timed_ms(
            partial(lambda c, h: c(F.interpolate(h, scale_factor=2.0)), conv, x), runs, device
        )
        transposed = timed_ms(partial(folded, x), runs, device)
        phases = timed_ms(partial(four_phase, x, conv), runs, device)
        reference = conv(F.interpolate(x, scale_factor=2.0)).float()
        row = {
            "channels": conv.in_channels,
            "from": size,
            "to": 2 * size,
            "diffusers_ms": round(original, 3),
            "folded_transposed_ms": round(transposed, 3),
            "four_2x2_convs_ms": round(phases, 3),
            "max_abs_diff_folded": (folded(x).float() - reference).abs().max().item(),
            "max_abs_diff_four": (four_phase(x, conv).float() - reference).abs().max().item(),
        }
        rows.append(row)
        print(json.dumps(row))
        size *= 2
    return rows


def decoder_figures(
    vae: Any,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    report: dict[str, Any],
) -> None:
    """The whole decoder folded against diffusers': PSNR and identical pixels of the faces,
    ms/frame eager (and compiled, with `--compile`)."""
    latents = torch.randn(args.batch, 4, LATENT_SIZE, LATENT_SIZE, device=device, dtype=dtype)
    folded_vae = copy.deepcopy(vae)
    report["folded_modules"] = fold_upsamplers(folded_vae)

    def decode(model: Any) -> Callable[[], torch.Tensor]:
        return lambda: images_to_uint8(model.decode(latents).sample)

    faces = decode(vae)()
    folded_faces = decode(folded_vae)()
    report["psnr_folded_vs_diffusers_db"] = round(psnr(folded_faces, faces), 2)
    report["identical_pixels"] = round((folded_faces == faces).float().mean().item(), 4)
    report["decoder_eager_ms_per_frame"] = round(
        timed_ms(decode(vae), args.runs, device) / args.batch, 3
    )
    report["decoder_folded_eager_ms_per_frame"] = round(
        timed_ms(decode(folded_vae), args.runs, device) / args.batch, 3
    )
    if args.compile:
        for name, model in (("compiled", vae), ("folded_compiled", folded_vae)):
            model.decoder = torch.compile(model.decoder)
            report[f"decoder_{name}_ms_per_frame"] = round(
                timed_ms(decode(model), args.runs, device) / args.batch, 3
            )


if __name__ == "__main__":
    main()
