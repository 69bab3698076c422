"""Loading the AOTInductor packages (`aot`) as the engine's per-frame models: torch's C++
package loader with the weights read beside it, a static-batch runner with an optional CUDA
graph, and a guard that stops a crashing native loader from crashing every restart.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from runtime.engine.aot import (
    DECODER,
    MANIFEST,
    MEL_FILTERS,
    MODELS,
    UNET,
    WHISPER,
    AotUnavailableError,
    constants_path,
    example_inputs,
)
from runtime.engine.aot_adapters import AotAudioEncoder, AotCodec, AotGenerator, LogMel

log = logging.getLogger(__name__)

LOAD_ATTEMPT = ".load-attempt"  # pid of a load in progress; left behind if the process died
# CUDA graphs around the loaded package: under torch.compile they took the H100 UNet step about
# a third faster and did not help the decoder.
DEFAULT_CUDA_GRAPHS = (UNET,)
# Overrides DEFAULT_CUDA_GRAPHS: comma-separated model names, empty for none.
CUDA_GRAPHS_ENV = "MUSETALK_AOT_CUDA_GRAPHS"
LOADER_ENV = "MUSETALK_AOT_LOADER"  # "direct" (default) or "package_api" (see load_runner)


def begin_load_attempt(directory: Path) -> bool:
    """Mark a load of the packages in `directory` as begun; False when an earlier load never
    finished because its process died (a crash in a native loader cannot be caught: this way
    it costs one restart, not every one)."""
    marker = directory / LOAD_ATTEMPT
    try:
        pid = int(marker.read_text())
    except FileNotFoundError:
        pid = None
    except (OSError, ValueError):
        return False
    if pid is not None and pid != os.getpid() and not _alive(pid):
        return False
    try:
        marker.write_text(str(os.getpid()))
    except OSError:  # a read-only cache: load anyway, without the guard
        log.warning("AOT load marker %s not written", marker)
    return True


def end_load_attempt(directory: Path) -> None:
    (directory / LOAD_ATTEMPT).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class StaticRunner:
    """A loaded package at its static batch size: pads a short batch, splits a long one, and
    (on CUDA, when asked) replays a CUDA graph captured around the package's kernels.

    With a graph the result is a view of the graph's output buffer, valid until the next call
    (the engine consumes each batch before it runs the next one, as with torch.compile's
    CUDA graphs).
    """

    def __init__(
        self, runner: Callable[..., Any], example: Sequence[torch.Tensor], *, cuda_graph: bool
    ) -> None:
        self.runner = runner
        self.batch_size = example[0].shape[0]
        self.dtypes = [tensor.dtype for tensor in example]
        self.device = example[0].device
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs = [tensor.clone() for tensor in example]
        self._output: torch.Tensor | None = None
        if cuda_graph and self.device.type == "cuda":
            self._capture()

    def _capture(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up outside the graph, as torch's docs ask
            for _ in range(2):
                self.runner(*self._inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._output = self.runner(*self._inputs)
        self._graph = graph

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        count = inputs[0].shape[0]
        if count > self.batch_size:
            parts = [
                self(*(tensor[start : start + self.batch_size] for tensor in inputs)).clone()
                for start in range(0, count, self.batch_size)
            ]
            return torch.cat(parts)
        cast = [
            tensor.to(device=self.device, dtype=dtype)
            for tensor, dtype in zip(inputs, self.dtypes, strict=True)
        ]
        if count < self.batch_size:
            cast = [_pad_batch(tensor, self.batch_size) for tensor in cast]
        if self._graph is None:
            output: torch.Tensor = self.runner(*cast)
            return output[:count]
        for static, tensor in zip(self._inputs, cast, strict=True):
            static.copy_(tensor)
        self._graph.replay()
        assert self._output is not None  # noqa: S101  # nosec B101 (set with the graph)
        return self._output[:count]


def _pad_batch(tensor: torch.Tensor, size: int) -> torch.Tensor:
    padding = tensor[-1:].expand(size - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, padding])


def load_runner(
    path: Path,
    device: torch.device,
    *,
    single_threaded: bool,
    constants: Callable[[], Mapping[str, torch.Tensor]] | None = None,
) -> Callable[..., Any]:
    """One package, loaded, with its weights: `constants()` gives them by name once the loader
    is built (their read overlaps its work); the runner uses these tensors in place, so they
    must be on `device` and stay alive with it.

    By default with torch's C++ package loader constructed here: `aoti_load_package`
    (`MUSETALK_AOT_LOADER=package_api`) wraps the same loader but imports torch._inductor and
    Dynamo and validates the archive (several times slower to load).
    """
    index = device.index if device.index is not None else -1
    weights: dict[str, torch.Tensor] = {}  # referenced by `run`: alive as long as the runner
    try:
        if os.environ.get(LOADER_ENV, "direct") != "package_api":
            loader = torch._C._aoti.AOTIModelPackageLoader(
                str(path), "model", single_threaded, 1, index
            )
            if constants is not None:
                weights = _constants_for(path, loader.get_constant_fqns(), constants())
                # (map, use the inactive buffer, check that every constant is given, use the
                # tensors as they are instead of copying them)
                loader.load_constants(weights, False, True, True)
            forward: Callable[[list[torch.Tensor]], list[torch.Tensor]] = loader.boxed_run
        else:
            compiled: Any = torch._inductor.aoti_load_package(
                str(path), run_single_threaded=single_threaded, device_index=index
            )
            if constants is not None:
                weights = _constants_for(path, compiled.get_constant_fqns(), constants())
                compiled.load_constants(weights, check_full_update=True, user_managed=True)
            forward = compiled.loader.boxed_run
    except Exception as error:  # a damaged zip, a missing symbol, a driver mismatch, ...
        raise AotUnavailableError(f"AOT package {path.name} not loadable: {error}") from error

    def run(*inputs: torch.Tensor, _weights: dict[str, torch.Tensor] = weights) -> torch.Tensor:
        (output,) = forward(list(inputs))
        return output

    return run


def _constants_for(
    path: Path, names: Sequence[str], constants: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    missing = [name for name in names if name not in constants]
    if missing:
        raise AotUnavailableError(f"{constants_path(path).name} lacks {missing[:3]}")
    return {name: constants[name] for name in names}


class ConstantsReader:
    """Reads the packages' weight files onto the device on one background thread, in the
    order asked, so the reads overlap the loader's work (extracting, dlopen, CUDA modules)."""

    def __init__(self, directory: Path, names: Sequence[str], device: torch.device) -> None:
        pool = ThreadPoolExecutor(1, thread_name_prefix="aot-constants")
        self._reads: dict[str, Future[dict[str, torch.Tensor]]] = {
            name: pool.submit(
                load_file, str(constants_path(directory / f"{name}.pt2")), device=str(device)
            )
            for name in names
        }
        pool.shutdown(wait=False)

    def wait_for_all(self) -> None:
        """Until every read has finished (a failed one raises later, in `constants`): a CUDA
        graph must not be captured while this thread copies weights to the device (another
        thread's work invalidates the capture; the engine would then drop the packages)."""
        futures_wait(list(self._reads.values()))

    def constants(self, name: str) -> dict[str, torch.Tensor]:
        try:
            return self._reads.pop(name).result()
        # absent, damaged, out of device memory
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            raise AotUnavailableError(
                f"weights of AOT package {name} unreadable: {error}"
            ) from error


@dataclass
class AotModels:
    generator: AotGenerator
    codec: AotCodec
    audio_encoder: AotAudioEncoder
    directory: Path
    load_ms: dict[str, float]


def load_models(
    directory: Path,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
    *,
    eager_codec: Callable[[], Any],
    cuda_graphs: Sequence[str] | None = None,
) -> AotModels:
    """The three packages as the engine's generator, codec and audio encoder.

    Each model runs once here (and is captured in a CUDA graph where asked), so a damaged
    package fails now, in `load`, not in the first job. `eager_codec` builds the diffusers VAE
    for preparation, on first use.
    """
    graphs: Sequence[str]
    if cuda_graphs is None:
        setting = os.environ.get(CUDA_GRAPHS_ENV)
        graphs = DEFAULT_CUDA_GRAPHS if setting is None else setting.split(",")
    else:
        graphs = cuda_graphs
    timings: dict[str, float] = {}
    manifest = json.loads((directory / MANIFEST).read_text())
    reader = ConstantsReader(directory, MODELS, device)

    def runner(name: str, example: tuple[torch.Tensor, ...]) -> StaticRunner:
        start = time.perf_counter()
        graph = name in graphs and device.type == "cuda"
        if graph:
            reader.wait_for_all()
        loaded = load_runner(
            directory / f"{name}.pt2",
            device,
            single_threaded=graph,
            constants=lambda: reader.constants(name),
        )
        try:
            static = StaticRunner(loaded, example, cuda_graph=graph)
            if not graph:
                static(*example)
        except Exception as error:
            raise AotUnavailableError(f"AOT package {name} does not run: {error}") from error
        timings[name] = (time.perf_counter() - start) * 1000
        return static

    unet = runner(UNET, example_inputs(UNET, batch_size, device, dtype))
    decoder = runner(DECODER, example_inputs(DECODER, batch_size, device, dtype))
    mel_filters = torch.from_numpy(np.load(directory / MEL_FILTERS))
    mel_bins = mel_filters.shape[1]
    whisper = runner(WHISPER, example_inputs(WHISPER, 1, device, dtype, mel_bins=mel_bins))
    mel = LogMel(mel_filters, **manifest["mel"])
    return AotModels(
        generator=AotGenerator(unet, device, dtype),
        codec=AotCodec(decoder, eager_codec),
        audio_encoder=AotAudioEncoder(whisper, mel, device, dtype),
        directory=directory,
        load_ms=timings,
    )
