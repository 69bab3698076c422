"""AOTInductor packages (`runtime.engine.aot*`): key, validation, loading, fallback, engine wiring.

CPU only (CI has no GPU; g++ builds the package). Building a package for the tiny engine's
three models takes minutes on 2 cores, so the compiler runs once here, on a small conv module;
the engine wiring runs the same `StaticRunner`/`Aot*` parts around the eager tiny models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from runtime.engine import aot, aot_adapters, aot_build, aot_load
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.layout import VERIFIED_STAMP_NAME, ModelsLayout
from runtime.engine.model_loading import aot_models
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.weight_cache import WeightCache
from runtime.fileio import file_sha256
from tests.unit.engine.conftest import assert_same_video, decode_frames

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[3]


def key_for(layout: ModelsLayout, batch: int = 8) -> aot.AotKey:
    return aot.AotKey.for_models(layout, CPU, torch.float32, batch)


def fake_packages(cache_dir: Path, key: aot.AotKey, content: bytes = b"not a zip") -> Path:
    """A package directory whose manifest matches `key` (file contents are up to the test)."""
    directory = aot.packages_dir(cache_dir, key)
    directory.mkdir(parents=True)
    files = {}
    for name in aot.package_file_names():
        (directory / name).write_bytes(content)
        files[name] = len(content)
    manifest = {"key": key.__dict__, "files": files, "sha256": {}, "mel": {}}
    (directory / aot.MANIFEST).write_text(json.dumps(manifest))
    return directory


# ------------------------------------------------------------------------------------ the key


def test_key_follows_card_dtype_batch_and_the_weights(tiny_models: ModelsLayout) -> None:
    # Given the tiny models' key
    key = key_for(tiny_models)
    # Then it names this torch and device, and another batch or dtype is another key
    assert key.torch_version == torch.__version__
    assert (key.device, key.capability) == ("cpu", "")
    assert key_for(tiny_models, batch=16).digest != key.digest
    other_dtype = aot.AotKey.for_models(tiny_models, CPU, torch.float16, 8)
    assert other_dtype.digest != key.digest
    # and the same models give the same key again
    assert key_for(tiny_models) == key


def test_key_uses_the_worker_verified_digests_so_every_instance_agrees(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given two copies of the models written at different times (other mtimes), each with the
    # worker sync's stamp of verified digests
    copies = []
    for name in ("a", "b"):
        root = tmp_path / name
        shutil.copytree(tiny_models.root, root)
        stamps = {}
        for path in root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                relative = path.relative_to(root).as_posix()
                stamps[relative] = [stat.st_size, stat.st_mtime_ns + 0, file_sha256(path)]
        (root / VERIFIED_STAMP_NAME).write_text(json.dumps(stamps))
        copies.append(ModelsLayout(root))
    os.utime(copies[1].unet_weights, ns=(1, 1))  # b's UNet changed after it was verified...
    assert key_for(copies[0]) != key_for(copies[1])  # ...so it is stamped by its mtime
    # When b's stamp is brought up to date (the content is the same)
    stamps = json.loads((copies[1].root / VERIFIED_STAMP_NAME).read_text())
    stat = copies[1].unet_weights.stat()
    stamps["musetalkV15/unet.pth"][:2] = [stat.st_size, stat.st_mtime_ns]
    (copies[1].root / VERIFIED_STAMP_NAME).write_text(json.dumps(stamps))
    # Then both copies have the same key: packages built by one instance serve the other
    assert key_for(copies[0]) == key_for(copies[1])


# ----------------------------------------------------------------------------- validation


def test_packages_of_another_key_or_truncated_are_not_found(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    key = key_for(tiny_models)
    # Given no packages, then packages whose manifest names another key
    assert aot.find_packages(tmp_path, key) is None
    directory = fake_packages(tmp_path, key)
    assert aot.find_packages(tmp_path, key) == directory
    manifest = json.loads((directory / aot.MANIFEST).read_text())
    manifest["key"]["torch_version"] = "0.0.0"
    (directory / aot.MANIFEST).write_text(json.dumps(manifest))
    # Then they are ignored
    assert aot.find_packages(tmp_path, key) is None
    # And a complete manifest with a truncated file is ignored too
    manifest["key"] = key.__dict__
    (directory / aot.MANIFEST).write_text(json.dumps(manifest))
    (directory / f"{aot.UNET}.pt2").write_bytes(b"short")
    assert aot.find_packages(tmp_path, key) is None


def test_an_unloadable_package_falls_back_and_is_removed_for_a_rebuild(
    tiny_models: ModelsLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given packages in place for this key whose files are damaged (not a package at all)
    directory = fake_packages(tmp_path, key_for(tiny_models))
    # When the engine asks for its AOT models
    timings: dict[str, float] = {}
    models = aot_models(tiny_models, WeightCache(tmp_path), CPU, torch.float32, timings)
    # Then it gets none (and compiles with torch.compile instead), says why, and the damaged
    # directory is gone so the next start builds the packages again
    assert models is None
    assert "unusable" in caplog.text
    assert not directory.exists()
    assert "aot_build" not in timings


def test_a_failed_build_falls_back(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a build that fails (e.g. no C++ compiler on the host)
    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("g++ not found")

    monkeypatch.setattr(aot_build, "build_packages", no_compiler)
    # When the engine asks for its AOT models, then it gets none and nothing is left behind
    assert aot_models(tiny_models, WeightCache(tmp_path), CPU, torch.float32, {}) is None
    assert not (tmp_path / "aot").exists()


# -------------------------------------------------------------------------------- runtime parts


def test_package_weights_are_read_in_the_background_and_a_missing_file_is_named(
    tmp_path: Path,
) -> None:
    # Given one package's weights file beside it, another package without one, and a third
    # whose file is damaged
    save_file({"conv.weight": torch.ones(2, 2)}, str(aot.constants_path(tmp_path / "a.pt2")))
    aot.constants_path(tmp_path / "c.pt2").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    # When a reader is started for all three
    reader = aot_load.ConstantsReader(tmp_path, ["a", "b", "c"], CPU)
    # Then the first comes back whole, and the others fail with the engine's fallback error
    assert torch.equal(reader.constants("a")["conv.weight"], torch.ones(2, 2))
    with pytest.raises(aot.AotUnavailableError, match="b"):
        reader.constants("b")
    with pytest.raises(aot.AotUnavailableError, match="c"):
        reader.constants("c")


def test_the_weights_reader_can_be_waited_for_before_a_graph_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader whose first read is held back until another thread lets it go
    released = threading.Event()
    reads: list[str] = []

    def held_load(path: str, device: str) -> dict[str, torch.Tensor]:
        if not reads:
            released.wait()
        reads.append(Path(path).name)
        return {}

    monkeypatch.setattr(aot_load, "load_file", held_load)
    reader = aot_load.ConstantsReader(tmp_path, ["a", "b"], CPU)
    threading.Timer(0.05, released.set).start()
    # When the loader waits for all of them (as it does before capturing a CUDA graph)
    reader.wait_for_all()
    # Then both reads have finished, in order
    assert reads == [aot.constants_path(tmp_path / f"{name}.pt2").name for name in "ab"]


def test_static_runner_pads_short_batches_and_splits_long_ones() -> None:
    # Given a runner of static batch 4 that records the batch sizes it is called with
    seen: list[int] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x * 2

    runner = aot_load.StaticRunner(double, (torch.zeros(4, 3),), cuda_graph=False)
    seen.clear()
    # When it gets 3 rows, then 10
    short = runner(torch.arange(3.0)[:, None].expand(3, 3))
    long = runner(torch.arange(10.0)[:, None].expand(10, 3))
    # Then the package only ever saw full batches, and the results are row for row
    assert seen == [4, 4, 4, 4]
    assert torch.equal(short[:, 0], torch.arange(3.0) * 2)
    assert torch.equal(long[:, 0], torch.arange(10.0) * 2)


def test_log_mel_equals_the_whisper_feature_extractor(
    tiny_models: ModelsLayout, speech_16k: np.ndarray
) -> None:
    from transformers import WhisperFeatureExtractor

    # Given the extractor of the models and our transformers-free log-mel with its filters
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_models.whisper_dir)
    mel = aot_adapters.LogMel(
        torch.from_numpy(extractor.mel_filters),
        n_fft=extractor.n_fft,
        hop_length=extractor.hop_length,
    )
    # When both compute the features of 8 s of speech (padded to the 30 s window)
    theirs = extractor(speech_16k, sampling_rate=16000, return_tensors="pt").input_features[0]
    ours = mel(speech_16k)
    # Then they agree
    assert ours.shape == theirs.shape == (80, 3000)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_an_engine_of_aot_parts_renders_what_the_eager_engine_renders(
    engine: MuseTalkEngine, short_video: Path, short_speech: Path, tmp_path: Path
) -> None:
    # Given the engine's eager models behind the AOT runtime parts at a static batch of 8 (the
    # compiled package is the seam: CI cannot afford building one for all three models)
    def parts_runner(
        module: torch.nn.Module, example: tuple[torch.Tensor, ...]
    ) -> aot_load.StaticRunner:
        return aot_load.StaticRunner(torch.inference_mode()(module), example, cuda_graph=False)

    whisper = engine.audio_encoder.extractor  # type: ignore[union-attr]
    examples = {
        name: aot.example_inputs(name, 8, CPU, torch.float32) for name in (aot.UNET, aot.DECODER)
    }
    codec = engine.codec
    packaged = MuseTalkEngine(
        generator=aot_adapters.AotGenerator(
            parts_runner(aot_build.UNetStep(engine.generator.unet), examples[aot.UNET]),  # type: ignore[union-attr]
            CPU,
            torch.float32,
        ),
        codec=aot_adapters.AotCodec(
            parts_runner(
                aot_build.DecoderStep(codec.vae, codec.scaling_factor),  # type: ignore[union-attr]
                examples[aot.DECODER],
            ),
            eager_codec=lambda: codec,
        ),
        audio_encoder=aot_adapters.AotAudioEncoder(
            parts_runner(
                aot_build.WhisperStates(engine.audio_encoder.encoder),  # type: ignore[union-attr]
                aot.example_inputs(aot.WHISPER, 1, CPU, torch.float32),
            ),
            aot_adapters.LogMel(
                torch.from_numpy(whisper.mel_filters),
                n_fft=whisper.n_fft,
                hop_length=whisper.hop_length,
            ),
            CPU,
            torch.float32,
        ),
        locator=engine.locator,
        parser=engine.parser,
        scorer=None,
        weights=engine.weights,
        device=CPU,
        dtype=torch.float32,
    )
    # Then it is an AOT engine batching at the packages' size, not torch.compile's
    assert packaged.aot
    assert packaged.compiled
    assert packaged.pick_batch_size() == 8
    assert not packaged._uses_cuda_graphs
    # When both prepare (the AOT codec hands encoding to the eager one) and render 20 frames
    options = RenderOptions(skip_silence=False)
    avatar = packaged.prepare(short_video, AvatarOptions())
    packaged.speak(avatar, short_speech, tmp_path / "aot.mp4", options=options)
    engine.speak(avatar, short_speech, tmp_path / "eager.mp4", options=options)
    # Then the videos are the same, frame for frame
    assert len(decode_frames(tmp_path / "aot.mp4")) == 20
    assert_same_video(tmp_path / "aot.mp4", tmp_path / "eager.mp4")


# ------------------------------------------------------------------------ a real package (g++)


class SmallDecoder(torch.nn.Module):
    """Conv, GroupNorm, SiLU, upsample and the uint8 conversion: the decoder's kinds of op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.norm = torch.nn.GroupNorm(4, 8)
        self.out = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        from runtime.engine.latents import images_to_uint8

        hidden = torch.nn.functional.silu(self.norm(self.conv(latents)))
        hidden = torch.nn.functional.interpolate(hidden, scale_factor=2.0, mode="nearest")
        return images_to_uint8(self.out(hidden))


FRESH_PROCESS_CHECK = """
import sys, torch
from pathlib import Path
from safetensors.torch import load_file
from runtime.engine import aot, aot_load
package = Path(sys.argv[1])
weights = load_file(aot.constants_path(package))
cpu = torch.device("cpu")
runner = aot_load.load_runner(package, cpu, single_threaded=False, constants=lambda: weights)
inputs = torch.load(sys.argv[2])
output = runner(inputs)
print(int((output.int() - torch.load(sys.argv[3]).int()).abs().max()))
print(sorted(m for m in ("torch._dynamo", "diffusers", "transformers") if m in sys.modules))
"""


@pytest.mark.slow  # one AOTInductor build with g++ (~25 s on 2 cores), two fresh processes
def test_a_package_built_here_loads_in_a_fresh_process_and_equals_eager(tmp_path: Path) -> None:
    # Given a small decoder-like module exported and packaged as the engine's models are
    torch.manual_seed(0)
    module = SmallDecoder().eval()
    example = (torch.randn(2, 4, 8, 8),)
    seconds: dict[str, float] = {}
    aot_build.package_model(module, example, tmp_path / "small.pt2", {}, seconds)
    assert set(seconds) == {"small_export", "small_compile"}
    inputs = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.save(inputs, tmp_path / "inputs.pt")
        torch.save(module(inputs), tmp_path / "expected.pt")
    # When a fresh interpreter loads and runs it
    files = [tmp_path / name for name in ("small.pt2", "inputs.pt", "expected.pt")]

    def fresh_process(loader: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS_CHECK, *map(str, files)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), aot_load.LOADER_ENV: loader},
        )
        return done.stdout.split("\n")[:2]

    # Then with either loader its output equals eager (uint8 levels, at most one off from
    # float rounding), neither needs the model libraries, and the direct one not even Dynamo
    for loader, imports in (("direct", "[]"), ("package_api", "['torch._dynamo']")):
        max_difference, imported = fresh_process(loader)
        assert int(max_difference) <= 1
        assert imported == imports
    # And a damaged copy, or no weights for a package that needs them (they live beside the
    # library, not in it), are refused with the error the engine falls back on
    damaged = tmp_path / "damaged.pt2"
    damaged.write_bytes((tmp_path / "small.pt2").read_bytes()[:1000])
    with pytest.raises(aot.AotUnavailableError):
        aot_load.load_runner(damaged, CPU, single_threaded=False)
    with pytest.raises(aot.AotUnavailableError, match="lacks"):
        aot_load.load_runner(tmp_path / "small.pt2", CPU, single_threaded=False, constants=dict)


def test_without_a_toolchain_and_without_packages_the_engine_runs_eager(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a host that cannot compile (the worker image: no C++ compiler, no CUDA headers)
    monkeypatch.setattr(aot, "missing_toolchain", lambda device: "no C++ compiler")
    # When a compiled engine is asked for, with no packages to load
    engine = MuseTalkEngine.load(
        tiny_models.root, "cpu", compile_models=True, cache_dir=tmp_path / "cache"
    )
    # Then it runs eager rather than failing in a build or in torch.compile, and built nothing
    assert not engine.aot
    assert not engine.compiled
    assert "aot_build" not in engine.load_timings_ms
    assert not (tmp_path / "cache" / "aot").exists()


def test_packages_whose_last_load_killed_the_process_are_not_loaded_again(
    tiny_models: ModelsLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given packages whose last load began in a process that died during it (a native crash
    # cannot be caught; its marker stays behind)
    directory = fake_packages(tmp_path, key_for(tiny_models))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (directory / aot_load.LOAD_ATTEMPT).write_text(dead)
    # When the engine asks for its AOT models
    timings: dict[str, float] = {}
    models = aot_models(tiny_models, WeightCache(tmp_path), CPU, torch.float32, timings)
    # Then it does not load them (nor rebuild them) and says why
    assert models is None
    assert "never finished" in caplog.text
    assert "aot_load" not in timings
    assert "aot_build" not in timings
    assert directory.exists()
    # And a load that finishes clears its marker
    assert aot_load.begin_load_attempt(tmp_path) is True
    aot_load.end_load_attempt(tmp_path)
    assert not (tmp_path / aot_load.LOAD_ATTEMPT).exists()


def test_build_artifacts_names_unknown_models_and_keeps_packages_in_place(
    tiny_models: ModelsLayout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.engine.cli import main

    common = ["build-artifacts", "--models", str(tiny_models.root), "--device", "cpu"]
    common += ["--cache-dir", str(tmp_path)]
    # Given an unknown model name for --max-autotune / Then it is refused by name
    assert main([*common, "--max-autotune", "vae_decoder,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    # Given packages already in place for this card and weights / Then nothing is rebuilt
    directory = fake_packages(tmp_path, key_for(tiny_models))
    assert main(common) == 0
    assert json.loads(capsys.readouterr().out) == {"directory": str(directory), "built": False}


# ------------------------------------------------------------------- extra flags for the compiler


def test_the_compiler_wrapper_adds_link_flags_only_where_it_links(tmp_path: Path) -> None:
    # Given a stand-in compiler that records its arguments, wrapped with one compile flag and
    # two linker flags
    log = tmp_path / "args.txt"
    real = tmp_path / "real-compiler"
    real.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    real.chmod(0o755)
    wrapper = aot_build.compiler_wrapper(
        tmp_path / "bin",
        ["-fvisibility-inlines-hidden", "-Wl,-Bsymbolic", "-static-libstdc++"],
        real=str(real),
    )
    # When Inductor compiles an object, then links the shared library
    subprocess.run([wrapper, "-c", "a.cpp", "-o", "a.o"], check=True)
    subprocess.run([wrapper, "a.o", "-shared", "-o", "a.so"], check=True)
    # Then the compile got the compile flag only, the link both; the name says g++ (Inductor
    # chooses its options by the compiler's name)
    compile_line, link_line = log.read_text().splitlines()
    assert compile_line == "-c a.cpp -o a.o -fvisibility-inlines-hidden"
    assert link_line == (
        "a.o -shared -o a.so -fvisibility-inlines-hidden -Wl,-Bsymbolic -static-libstdc++"
    )
    assert wrapper.name == "g++"


def test_packages_are_built_with_the_wrapper_and_the_weights_beside_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Inductor's packaging step replaced by one that records its configuration
    seen: dict[str, object] = {}

    def record(exported: object, package_path: str, inductor_configs: dict) -> None:
        seen.update(inductor_configs)
        seen["wrapper_exists"] = Path(inductor_configs["cpp.cxx"][0]).is_file()

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", record)
    monkeypatch.setenv(aot_build.CXX_FLAGS_ENV, "-fvisibility-inlines-hidden -Wl,--no-as-needed")
    # When a module is packaged with the flags the environment names
    module = SmallDecoder().eval()
    seconds: dict[str, float] = {}
    flags = aot_build.compiler_flags_from_env()
    inputs = (torch.zeros(2, 4, 8, 8),)
    aot_build.package_model(
        module, inputs, tmp_path / "small.pt2", {}, seconds, compiler_flags=flags
    )
    # Then Inductor compiled through the wrapper (present while it ran), kept the weights out of
    # the library, and they were written beside the package, every one of them
    assert flags == ["-fvisibility-inlines-hidden", "-Wl,--no-as-needed"]
    assert seen["wrapper_exists"] is True
    assert seen["aot_inductor.package_constants_in_so"] is False
    weights = load_file(aot.constants_path(tmp_path / "small.pt2"))
    assert set(weights) == set(module.state_dict())


def test_build_artifacts_passes_its_compiler_flags_to_the_build(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.engine.cli import main

    # Given a build that records what it was asked for
    asked: dict[str, object] = {}

    def build(*args: object, **kwargs: object) -> aot_build.BuildReport:
        asked.update(kwargs)
        return aot_build.BuildReport(tmp_path, {})

    monkeypatch.setattr(aot_build, "build_packages", build)
    monkeypatch.setenv(aot_build.CXX_FLAGS_ENV, "-Wl,-Bsymbolic")
    common = ["build-artifacts", "--models", str(tiny_models.root), "--device", "cpu"]
    common += ["--cache-dir", str(tmp_path)]
    # When it runs with --cxx-flags, then those flags are used (one flag too, given with "=");
    # without, the environment's; with neither, the default set
    assert main([*common, "--cxx-flags", "-fvisibility-inlines-hidden -O2"]) == 0
    assert asked["compiler_flags"] == ["-fvisibility-inlines-hidden", "-O2"]
    assert main([*common, "--cxx-flags=-Wl,--no-as-needed"]) == 0
    assert asked["compiler_flags"] == ["-Wl,--no-as-needed"]
    assert main(common) == 0
    assert asked["compiler_flags"] == ["-Wl,-Bsymbolic"]
    monkeypatch.delenv(aot_build.CXX_FLAGS_ENV)
    assert main(common) == 0
    assert asked["compiler_flags"] == list(aot_build.DEFAULT_CXX_FLAGS)
    # and an empty setting means Inductor's own command
    monkeypatch.setenv(aot_build.CXX_FLAGS_ENV, "")
    assert main(common) == 0
    assert asked["compiler_flags"] == []
