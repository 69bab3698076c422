"""Preparation's AOT packages (`runtime.engine.aot_prepare`): what they compute and how they
are attached. CPU only; the package (the compiled library) is the seam, as in test_aot.py: the
modules exported are run eager behind `aot_load.load_runner`'s place."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine import aot, aot_build, aot_load, aot_prepare
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces.s3fd import S3FD
from runtime.engine.latents import LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions
from tests.unit.engine.standins import CentreLocator, LowerHalfParser

CPU = torch.device("cpu")


def frames(count: int, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 255, (count, 64, 96, 3), dtype=np.uint8))


def crops(count: int) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 255, (count, 256, 256, 3), dtype=np.uint8)


def test_frame_sizes_are_height_x_width_and_a_bad_one_is_named() -> None:
    assert aot_prepare.parse_sizes("720x1280, 1216x704") == ((720, 1280), (1216, 704))
    assert aot_prepare.parse_sizes("") == ()
    with pytest.raises(ValueError, match="'720p'"):
        aot_prepare.parse_sizes("720x1280,720p")


def test_the_exported_modules_compute_what_the_eager_models_do(tiny_models: ModelsLayout) -> None:
    # Given the detector and the codec, eager
    detector = S3FD.load(tiny_models.s3fd, CPU)
    codec = LatentCodec(tiny_models.vae_dir, CPU, torch.float32)
    batch = frames(2)
    scores, boxes = detector._strongest(batch)
    latents = codec.encode_crops(crops(3))

    # When S3FD's pick and the encoder run as the modules the packages are exported from
    picked = aot_prepare.S3FDPick(detector)(batch)
    codec.use_packaged_encoder(torch.inference_mode()(aot_prepare.EncoderMoments(codec)), 2)
    packaged_latents = codec.encode_crops(crops(3))  # 2 + 1 padded to 2: fixed batches

    # Then they give the same answers
    assert torch.equal(picked[:, 0], scores)
    assert torch.equal(picked[:, 1:], boxes)
    assert codec.encode_batch == 2
    torch.testing.assert_close(packaged_latents, latents, rtol=0, atol=1e-3)  # batch 2, not 3


def fake_build(directory: Path, layout: ModelsLayout, spec: aot_prepare.PrepareSpec) -> dict:
    """`aot_prepare.build` with a packager that writes placeholders, as
    `aot_build.package_model` names its outputs; the manifest written as
    `aot_build.build_packages` writes it."""
    built: list[str] = []

    def package(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
        built.append(f"{path.name} {tuple(inputs[0].shape)}")
        path.write_bytes(b"package")
        aot.constants_path(path).write_bytes(b"weights")

    section = aot_prepare.build(directory, layout, CPU, torch.float32, spec, package)
    (directory / aot.MANIFEST).write_text(json.dumps({"prepare": section}))
    return {"section": section, "built": built}


def eager_runner(layout: ModelsLayout) -> Callable[..., Callable[..., torch.Tensor]]:
    """Stands in for `aot_load.load_runner`: the module each package holds, eager."""

    def load_runner(path: Path, device: torch.device, **kwargs: object) -> Callable:
        if path.name.startswith("s3fd"):
            module = aot_prepare.S3FDPick(S3FD.load(layout.s3fd, device))
        else:
            module = aot_prepare.EncoderMoments(LatentCodec(layout.vae_dir, device, torch.float32))

        @torch.inference_mode()
        def run(inputs: torch.Tensor) -> torch.Tensor:
            # a package reads its input with the example's (contiguous) strides
            assert inputs.is_contiguous()
            return module(inputs)

        return run

    return load_runner


def test_build_lists_one_encoder_and_an_s3fd_per_size_sharing_its_weights(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    spec = aot_prepare.PrepareSpec(torch.float32, 4, 2, ((64, 96), (96, 64)))

    result = fake_build(tmp_path, tiny_models, spec)

    assert result["built"] == [
        "vae_encoder.pt2 (8, 3, 256, 256)",  # masked and reference crops of 4 frames
        "s3fd_h64_w96.pt2 (2, 64, 96, 3)",
        "s3fd_h96_w64.pt2 (2, 96, 64, 3)",
    ]
    section = result["section"]
    assert section["files"] == [
        "vae_encoder.pt2",
        "vae_encoder.constants.safetensors",
        "s3fd_h64_w96.pt2",
        "s3fd_h96_w64.pt2",
        aot_prepare.S3FD_WEIGHTS,
    ]
    assert all((tmp_path / name).is_file() for name in section["files"])
    assert not list(tmp_path.glob("s3fd_h*.constants.safetensors"))  # one shared weights file


def test_attached_packages_serve_their_frame_size_and_dtype_only(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given packages for 64x96 frames in batches of 2 (S3FD) and 4 frames (encoder), fp32
    fake_build(tmp_path, tiny_models, aot_prepare.PrepareSpec(torch.float32, 4, 2, ((64, 96),)))
    monkeypatch.setattr(aot_load, "load_runner", eager_runner(tiny_models))
    detector = S3FD.load(tiny_models.s3fd, CPU)
    codec = LatentCodec(tiny_models.vae_dir, CPU, torch.float32)
    expected = detector._strongest(frames(2))

    # When they are attached to an fp32 detector and the codec
    loaded = aot_prepare.attach(tmp_path, codec, detector, tiny_models, CPU)

    # Then S3FD runs from its package for exactly that shape, the encoder in fixed batches
    assert set(loaded) == {"vae_encoder", "s3fd_h64_w96"}
    assert list(detector.packaged) == [(2, 64, 96, 3)]
    scores, boxes = detector._strongest(frames(2))
    assert torch.equal(scores, expected[0])
    assert torch.equal(boxes, expected[1])
    assert codec.encode_batch == 4
    torch.testing.assert_close(
        codec.encode_crops(crops(5)),
        LatentCodec(tiny_models.vae_dir, CPU, torch.float32).encode_crops(crops(5)),
        rtol=0,
        atol=1e-3,
    )
    # and a bfloat16 detector keeps its eager network (the packages hold fp32 S3FD)
    other = S3FD.load(tiny_models.s3fd, CPU, torch.bfloat16)
    loaded = aot_prepare.attach(tmp_path, codec, other, tiny_models, CPU)
    assert set(loaded) == {"vae_encoder"}
    assert other.packaged == {}


def test_a_package_that_does_not_load_leaves_its_model_eager(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_build(tmp_path, tiny_models, aot_prepare.PrepareSpec(torch.float32, 4, 2, ((64, 96),)))

    def broken(path: Path, *args: object, **kwargs: object) -> None:
        raise aot.AotUnavailableError(f"{path.name} damaged")

    monkeypatch.setattr(aot_load, "load_runner", broken)
    detector = S3FD.load(tiny_models.s3fd, CPU)
    codec = LatentCodec(tiny_models.vae_dir, CPU, torch.float32)

    assert aot_prepare.attach(tmp_path, codec, detector, tiny_models, CPU) == {}
    assert detector.packaged == {}
    assert codec.encode_batch is None


def test_the_engine_attaches_them_on_its_first_preparation_and_prepares_the_same(
    engine: MuseTalkEngine,
    tiny_models: ModelsLayout,
    short_video: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an engine told to use preparation packages (the encoder's, in batches of 4 frames)
    fake_build(tmp_path, tiny_models, aot_prepare.PrepareSpec(torch.float32, 4, 2, ()))
    monkeypatch.setattr(aot_load, "load_runner", eager_runner(tiny_models))
    fresh = MuseTalkEngine.load(
        tiny_models.root, "cpu", "float32", locator=CentreLocator(), parser=LowerHalfParser()
    )
    fresh.use_prepare_packages(tmp_path, tiny_models)
    assert fresh.prepare_packages_ms == {}  # not at load: the first prepare attaches them

    # When it prepares an avatar
    prepared = fresh.prepare(short_video, AvatarOptions())

    # Then the encoder ran from its package, and the avatar is the eager engine's
    assert set(fresh.prepare_packages_ms) == {"vae_encoder"}
    assert fresh.codec.encode_batch == 4  # type: ignore[union-attr]
    expected = engine.prepare(short_video, AvatarOptions())
    assert np.array_equal(prepared.boxes, expected.boxes)
    np.testing.assert_allclose(prepared.latents, expected.latents, rtol=0, atol=1e-3)


def test_build_artifacts_asks_for_preparation_packages_where_told(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.engine.cli import main

    asked: list[object] = []

    def build(*args: object, **kwargs: object) -> aot_build.BuildReport:
        asked.append(kwargs["prepare"])
        return aot_build.BuildReport(tmp_path, {})

    monkeypatch.setattr(aot_build, "build_packages", build)
    common = ["build-artifacts", "--models", str(tiny_models.root), "--device", "cpu"]
    common += ["--cache-dir", str(tmp_path), "--force"]

    assert main(common) == 0  # on CPU: none by default
    assert main([*common, "--prepare-sizes", "64x96"]) == 0

    assert asked[0] is None
    assert asked[1] == aot_prepare.PrepareSpec(torch.float32, 32, 8, ((64, 96),))
