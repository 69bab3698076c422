"""Three questions about the GPU path's last few percent, on the packages a worker loads:

- **UNet autotuned**: `build-artifacts` autotunes the decoder only. This packages the UNet step
  again with `aot_build.autotune_options()` and times both packages (CUDA graph, as the engine
  runs the UNet), with the build's seconds and how far the two outputs are apart.
- **The decoder in a CUDA graph**, as the UNet runs (the engine runs the decoder's package
  without one).
- **Two streams**: the decoder of batch i beside the UNet of batch i+1 on a second stream
  against both on one stream (the engine's order): whether the GroupNorms' memory-bound
  kernels and the convolutions' compute-bound ones overlap enough to matter.

Run after `python -m runtime.engine build-artifacts --models M --cache-dir C` on a CUDA machine:

    python bench/gpu_path_probes.py --models M --cache-dir C [--autotune-unet] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime.engine import aot, aot_build
from runtime.engine.aot import DECODER, UNET, AotKey, constants_path, example_inputs
from runtime.engine.aot_load import StaticRunner, load_runner
from runtime.engine.batch_sizes import static_batch_size
from runtime.engine.layout import ModelsLayout

DTYPE = torch.float16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True, help="build-artifacts' output")
    parser.add_argument("--batches", type=int, default=12, help="batches per timed run")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (median)")
    parser.add_argument("--autotune-unet", action="store_true", help="build and time it")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    layout = ModelsLayout(args.models)
    batch = static_batch_size(device, DTYPE)
    directory = aot.find_packages(args.cache_dir, AotKey.for_models(layout, device, DTYPE, batch))
    if directory is None:
        raise SystemExit(f"no packages for this card in {args.cache_dir}: run build-artifacts")
    unet = runner(directory / f"{UNET}.pt2", device, batch, graph=True)
    decoder = runner(directory / f"{DECODER}.pt2", device, batch, graph=False)
    torch.manual_seed(0)
    unet_in = tuple(torch.randn_like(t) for t in example_inputs(UNET, batch, device, DTYPE))
    decoder_in = torch.randn_like(example_inputs(DECODER, batch, device, DTYPE)[0])
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "batch": batch,
        "frames_per_run": batch * args.batches,
        "runs": args.runs,
    }

    def timed(model: StaticRunner, *inputs: torch.Tensor) -> float:
        """`--batches` calls of `model`, timed."""
        return median_ms(lambda: [model(*inputs) for _ in range(args.batches)], args.runs)

    report["unet_ms"] = timed(unet, *unet_in)
    report["decoder_ms"] = timed(decoder, decoder_in)
    graphed = runner(directory / f"{DECODER}.pt2", device, batch, graph=True)
    report["decoder_cuda_graph_ms"] = timed(graphed, decoder_in)
    report |= stream_overlap(unet, decoder, unet_in, decoder_in, args.batches, args.runs)
    if args.autotune_unet:
        report |= autotuned_unet(layout, args.cache_dir, device, batch, unet, unet_in, timed)
    print(json.dumps(report, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def runner(package: Path, device: torch.device, batch: int, *, graph: bool) -> StaticRunner:
    """A package as the engine loads it (`aot_load`), its weights from the file beside it."""
    from safetensors.torch import load_file

    weights = load_file(str(constants_path(package)), device=str(device))
    loaded = load_runner(package, device, single_threaded=graph, constants=lambda: weights)
    inputs = example_inputs(package.stem, batch, device, DTYPE)
    return StaticRunner(loaded, inputs, cuda_graph=graph)


def median_ms(work: Callable[[], object], runs: int) -> float:
    """Median GPU milliseconds of `work` over `runs` runs after one warm-up (CUDA events)."""
    work()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 2)


def stream_overlap(
    unet: StaticRunner,
    decoder: StaticRunner,
    unet_in: tuple[torch.Tensor, ...],
    decoder_in: torch.Tensor,
    batches: int,
    runs: int,
) -> dict[str, float]:
    """Both models per batch on one stream, then the decoder beside the next UNet step."""
    main_stream = torch.cuda.current_stream()
    side = torch.cuda.Stream()

    def one_stream() -> None:
        for _ in range(batches):
            unet(*unet_in)
            decoder(decoder_in)

    def two_streams() -> None:
        side.wait_stream(main_stream)
        for _ in range(batches):
            with torch.cuda.stream(side):
                unet(*unet_in)
            decoder(decoder_in)
            main_stream.wait_stream(side)  # the next decode needs this step's latents

    one = median_ms(one_stream, runs)
    two = median_ms(two_streams, runs)
    return {"one_stream_ms": one, "two_streams_ms": two, "two_vs_one": round(one / two, 3)}


def autotuned_unet(
    layout: ModelsLayout,
    cache_dir: Path,
    device: torch.device,
    batch: int,
    default: StaticRunner,
    unet_in: tuple[torch.Tensor, ...],
    timed: Callable[..., float],
) -> dict[str, Any]:
    """The UNet step packaged with the autotune options, timed beside the default package."""
    from runtime.engine.latents import Generator
    from runtime.engine.weight_cache import WeightCache

    generator = Generator(
        layout.unet_config, layout.unet_weights, device, DTYPE, cache=WeightCache(cache_dir)
    )
    seconds: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix="unet-autotune-"))
    aot_build.package_model(
        aot_build.UNetStep(generator.unet),
        example_inputs(UNET, batch, device, DTYPE),
        scratch / f"{UNET}.pt2",
        aot_build.autotune_options(),
        seconds,
        compiler_flags=aot_build.compiler_flags_from_env(),
    )
    del generator
    tuned = runner(scratch / f"{UNET}.pt2", device, batch, graph=True)
    reference = default(*unet_in).float().clone()
    difference = (tuned(*unet_in).float() - reference).abs()

    return {
        "unet_autotuned_ms": timed(tuned, *unet_in),
        # again after the build: the same card state as the tuned one
        "unet_default_again_ms": timed(default, *unet_in),
        "unet_autotune_seconds": seconds,  # export and compile
        "unet_autotuned_max_abs_diff": round(float(difference.max()), 5),
        "unet_output_abs_max": round(float(reference.abs().max()), 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
