"""Latents and the UNet step against spec §4-5."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.engine.latents import (
    SCALING_FACTOR,
    Generator,
    LatentCodec,
    crops_to_pixels,
    images_to_uint8,
    mask_lower_half,
)
from runtime.engine.layout import ModelsLayout
from tests.unit.engine.conftest import MEDIA


@pytest.fixture(scope="module")
def codec(tiny_models: ModelsLayout) -> LatentCodec:
    return LatentCodec(tiny_models.vae_dir, torch.device("cpu"), torch.float32)


def random_crops(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 256, 256, 3), dtype=np.uint8)


def test_pixels_are_rgb_in_minus_one_to_one() -> None:
    # Given a BGR crop whose pixels are (B=0, G=128, R=255)
    crop = np.zeros((1, 256, 256, 3), np.uint8)
    crop[..., 1], crop[..., 2] = 128, 255
    # When converted
    pixels = crops_to_pixels(crop)
    # Then channel 0 is red at +1, channel 2 is blue at -1
    assert pixels.shape == (1, 3, 256, 256)
    assert torch.all(pixels[:, 0] == 1.0)
    assert torch.allclose(pixels[:, 1], torch.tensor(128 / 255 * 2 - 1), atol=1e-6)
    assert torch.all(pixels[:, 2] == -1.0)


def test_lower_half_rows_128_to_255_become_exactly_minus_one() -> None:
    pixels = crops_to_pixels(random_crops(2))
    masked = mask_lower_half(pixels)
    assert torch.all(masked[:, :, 128:, :] == -1.0)
    assert torch.equal(masked[:, :, :128, :], pixels[:, :, :128, :])
    assert not torch.all(pixels[:, :, 128:, :] == -1.0)  # the input is untouched


def test_latents_are_masked_then_reference_scaled_posterior_means(codec: LatentCodec) -> None:
    # Given two crops
    crops = random_crops(2, seed=1)
    # When they are encoded
    latents = codec.encode_crops(crops)
    # Then channels 0-3 encode the masked crop and 4-7 the crop itself, both x 0.18215
    pixels = crops_to_pixels(crops).contiguous()
    with torch.inference_mode():
        masked = codec.vae.encode(mask_lower_half(pixels)).latent_dist.mean * SCALING_FACTOR
        reference = codec.vae.encode(pixels).latent_dist.mean * SCALING_FACTOR
    assert latents.shape == (2, 8, 32, 32)
    assert torch.allclose(latents[:, :4], masked, atol=1e-5)
    assert torch.allclose(latents[:, 4:], reference, atol=1e-5)
    # and the mean (not a sample) makes it deterministic
    assert torch.equal(latents, codec.encode_crops(crops))


def test_a_tuned_encoder_gives_the_same_latents_in_fixed_padded_batches(
    tiny_models: ModelsLayout,
) -> None:
    # Given a codec, five crops and their latents as the codec encodes them by default
    codec = LatentCodec(tiny_models.vae_dir, torch.device("cpu"), torch.float32)
    crops = random_crops(5, seed=2)
    default = codec.encode_crops(crops)
    seen: list[tuple[int, bool]] = []
    codec.vae.encoder.register_forward_pre_hook(
        lambda _, args: seen.append(
            (len(args[0]), args[0].is_contiguous(memory_format=torch.channels_last))
        )
    )

    # When the encoder is tuned to channels-last batches of two frames (four images: masked
    # and reference), then also compiled (Dynamo only on CPU)
    codec.tune_encoder(channels_last=True, batch=2)
    tuned = codec.encode_crops(crops)
    batches = list(seen)
    codec.tune_encoder(channels_last=True, batch=2, compile_backend="eager")
    compiled = codec.encode_crops(crops)

    # Then the encoder saw three full batches, the last padded, contiguous on CPU (channels-last
    # is for CUDA), and the latents are the default ones (the frames never share an image)
    assert batches == [(4, False)] * 3
    assert tuned.shape == compiled.shape == (5, 8, 32, 32)
    assert torch.allclose(tuned, default, atol=1e-5)
    assert torch.allclose(compiled, default, atol=1e-5)
    # and a compiled encoder without a fixed batch is refused
    with pytest.raises(ValueError, match="fixed batch"):
        codec.tune_encoder(channels_last=False, batch=None, compile_backend="eager")


def test_decode_clamps_scales_and_rounds_half_to_even() -> None:
    images = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0, 2 * (100.5 / 255) - 1]).reshape(1, 1, 2, 3)
    assert images_to_uint8(images).flatten().tolist() == [0, 0, 128, 255, 255, 100]


def test_decode_gives_uint8_rgb_faces(codec: LatentCodec) -> None:
    faces = codec.decode(torch.randn(3, 4, 32, 32))
    assert faces.shape == (3, 3, 256, 256)
    assert faces.dtype == torch.uint8


def test_decode_unscales_like_upstream_by_the_reciprocal(codec: LatentCodec) -> None:
    # Given latents where x * (1/0.18215) and x / 0.18215 differ in the last bit
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    official = latents * (1 / SCALING_FACTOR)  # upstream decode_latents
    assert not torch.equal(official, latents / SCALING_FACTOR)
    seen: list[torch.Tensor] = []
    decode = codec.vae.decode

    def record(x: torch.Tensor) -> object:
        seen.append(x.clone())
        return decode(x)

    codec.vae.decode = record
    try:
        # When we decode
        codec.decode(latents)
    finally:
        codec.vae.decode = decode
    # Then the VAE saw exactly what upstream feeds it
    assert torch.equal(seen[0], official)


def test_unet_step_predicts_a_four_channel_latent(tiny_models: ModelsLayout) -> None:
    generator = Generator(
        tiny_models.unet_config, tiny_models.unet_weights, torch.device("cpu"), torch.float32
    )
    latents, audio = torch.randn(2, 8, 32, 32), torch.randn(2, 50, 384)
    out = generator.step(latents, audio)
    assert out.shape == (2, 4, 32, 32)
    # a single forward pass with no noise: the same inputs give the same prediction
    assert torch.equal(out, generator.step(latents, audio))
    # and the audio matters
    assert not torch.allclose(out, generator.step(latents, torch.randn(2, 50, 384)))


def test_unet_loading_is_strict(tiny_models: ModelsLayout, tmp_path: Path) -> None:
    # Given a state_dict with one key missing
    state = torch.load(tiny_models.unet_weights, weights_only=True)
    state.pop(next(iter(state)))
    broken = tmp_path / "unet.pth"
    torch.save(state, broken)
    # Then loading refuses it
    with pytest.raises(RuntimeError, match="Missing key"):
        Generator(tiny_models.unet_config, broken, torch.device("cpu"), torch.float32)


def face_crop() -> np.ndarray:
    """A real face, cropped and resized as preparation does (upper middle of musk.png)."""
    image = cv2.imread(str(MEDIA / "musk.png"))
    height, width = image.shape[:2]
    face = image[height // 5 : height * 3 // 5, width // 4 : width * 3 // 4]
    return cv2.resize(face, (256, 256), interpolation=cv2.INTER_LANCZOS4)[None]


def test_latents_of_a_real_face_match_an_fp64_encoder_on_cpu(
    codec: LatentCodec, tiny_models: ModelsLayout
) -> None:
    # Given a face crop and the tiny VAE, whose GroupNorm groups hold one or two channels
    # (where torch's CPU kernel on a channels-last input lost 2e-4 against fp64)
    crop = face_crop()
    pixels = crops_to_pixels(crop)
    images = torch.cat([mask_lower_half(pixels), pixels]).contiguous().double()
    exact = LatentCodec(tiny_models.vae_dir, torch.device("cpu"), torch.float32)
    exact.vae.double()
    with torch.inference_mode():
        moments = exact.vae.quant_conv(exact.vae.encoder(images))[:, :4] * SCALING_FACTOR
    reference = torch.cat([moments[:1], moments[1:]], dim=1)
    # When the codec encodes it in fp32
    latents = codec.encode_crops(crop)
    # Then the latents are the fp64 ones to fp32 accuracy
    assert (latents.double() - reference).abs().max().item() < 1e-5
