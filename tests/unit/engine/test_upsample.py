"""Folded upsampling (`runtime/engine/upsample.py`) computes what diffusers' Upsample2D does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.upsampling import Upsample2D

from runtime.engine.configs import TINY_VAE_OVERRIDES, VAE_CONFIG, unet_config
from runtime.engine.latents import LATENT_SIZE, Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.upsample import FoldedUpsampleConv, fold_upsamplers


@pytest.mark.parametrize(("height", "width", "bias"), [(1, 1, True), (5, 7, True), (4, 6, False)])
def test_folded_module_equals_nearest_upsample_then_conv(
    height: int, width: int, bias: bool
) -> None:
    # Given a 3x3 conv and a map of any size, borders included (odd, rectangular, one pixel)
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1, bias=bias).double()
    hidden = torch.randn(2, 6, height, width, dtype=torch.float64)
    # When the pair runs folded
    folded = FoldedUpsampleConv(conv).double()(hidden)
    # Then it matches upsampling first and convolving the large map
    expected = conv(F.interpolate(hidden, scale_factor=2.0, mode="nearest"))
    assert folded.shape == expected.shape == (2, 5, 2 * height, 2 * width)
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-6)
    assert folded.is_contiguous()


def test_folded_module_refuses_anything_but_doubling() -> None:
    folded = FoldedUpsampleConv(torch.nn.Conv2d(2, 2, 3, padding=1))
    hidden = torch.zeros(1, 2, 4, 4)
    assert folded(hidden, (8, 8)).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="only doubles"):
        folded(hidden, (9, 8))


def test_folding_the_vae_decoder_keeps_its_output() -> None:
    # Given the VAE decoder (tiny config, random weights)
    torch.manual_seed(2)
    vae = AutoencoderKL(**{**VAE_CONFIG, **TINY_VAE_OVERRIDES}).eval()
    latents = torch.randn(2, 4, 8, 8)
    with torch.inference_mode():
        expected = vae.decode(latents).sample
        # When its upsamplers are folded
        upsamplers = sum(isinstance(m, Upsample2D) for m in vae.decoder.modules())
        replaced = fold_upsamplers(vae.decoder)
        folded = vae.decode(latents).sample
    # Then every one was replaced and the decoded image is the same
    assert replaced == upsamplers > 0
    assert not any(isinstance(m, Upsample2D) for m in vae.decoder.modules())
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-4)


def test_folding_the_unet_keeps_its_output() -> None:
    # Given the UNet (tiny config), whose up blocks pass an output size to their upsamplers
    torch.manual_seed(3)
    unet = UNet2DConditionModel(**unet_config(tiny=True)).eval()
    sample = torch.randn(2, unet.config.in_channels, 16, 16)
    audio = torch.randn(2, 5, unet.config.cross_attention_dim)
    timestep = torch.zeros(2, dtype=torch.long)
    with torch.inference_mode():
        expected = unet(sample, timestep, encoder_hidden_states=audio).sample
        replaced = fold_upsamplers(unet)
        folded = unet(sample, timestep, encoder_hidden_states=audio).sample
    assert replaced > 0
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-4)


def test_the_engines_models_come_folded_unless_the_baseline_asks_for_diffusers_modules(
    tiny_models: ModelsLayout,
) -> None:
    # Given the tiny UNet and VAE built as the engine builds them, and as the benchmark's plain
    # baseline does (fold_upsampling off)
    cpu = torch.device("cpu")
    layout = (tiny_models.unet_config, tiny_models.unet_weights, cpu, torch.float32)
    generator, plain_generator = Generator(*layout), Generator(*layout, fold_upsampling=False)
    codec = LatentCodec(tiny_models.vae_dir, cpu, torch.float32)
    plain_codec = LatentCodec(tiny_models.vae_dir, cpu, torch.float32, fold_upsampling=False)
    # Then the engine's modules have folded upsamplers and no diffusers ones; the plain ones
    # are diffusers' as they are
    for folded, plain in ((generator.unet, plain_generator.unet), (codec.vae, plain_codec.vae)):
        assert any(isinstance(m, FoldedUpsampleConv) for m in folded.modules())
        assert not any(isinstance(m, Upsample2D) for m in folded.modules())
        assert not any(isinstance(m, FoldedUpsampleConv) for m in plain.modules())
    # And the two compute the same faces from the same inputs
    torch.manual_seed(5)
    latents = torch.randn(2, 8, LATENT_SIZE, LATENT_SIZE)
    audio = torch.randn(2, 50, generator.unet.config.cross_attention_dim)
    predicted = generator.step(latents, audio)
    torch.testing.assert_close(predicted, plain_generator.step(latents, audio), rtol=0, atol=1e-4)
    faces = codec.decode(predicted).int()
    assert (faces - plain_codec.decode(predicted).int()).abs().max() <= 1
