"""make-weights: the official layout, the random marker, and the spec's configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from runtime.engine import official_weights
from runtime.engine.configs import UNET_CONFIG, VAE_CONFIG, WHISPER_CONFIG
from runtime.engine.layout import ModelsLayout
from runtime.engine.official_weights import OfficialFile


def test_tiny_weights_use_the_official_file_layout(tiny_models: ModelsLayout) -> None:
    root = tiny_models.root
    for relative in [
        "musetalkV15/unet.pth",
        "musetalkV15/musetalk.json",
        "sd-vae/config.json",
        "sd-vae/diffusion_pytorch_model.bin",
        "whisper/config.json",
        "whisper/pytorch_model.bin",
        "whisper/preprocessor_config.json",
    ]:
        assert (root / relative).is_file(), relative


def test_make_weights_marks_the_directory_random(tiny_models: ModelsLayout) -> None:
    assert tiny_models.weights_kind() == "random"
    assert json.loads(tiny_models.marker.read_text())["tiny"] is True


def test_real_weights_without_the_release_checksums_are_custom(tmp_path: Path) -> None:
    # Given real (unmarked) weights that are not the official release's files
    (tmp_path / "musetalkV15").mkdir()
    (tmp_path / "musetalkV15" / "unet.pth").write_bytes(b"fine-tuned")
    # Then they are reported as custom, not official
    assert ModelsLayout(tmp_path).weights_kind() == "custom"


def test_only_files_matching_the_pinned_checksums_are_official(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a release table of two files, one pinned by digest and one by a file-name prefix
    (tmp_path / "unet.pth").write_bytes(b"official unet")
    (tmp_path / "s3fd.pth").write_bytes(b"official s3fd")
    unet = hashlib.sha256(b"official unet").hexdigest()
    s3fd = hashlib.sha256(b"official s3fd").hexdigest()[:10]
    table = (
        OfficialFile("unet.pth", "test", sha256=unet),
        OfficialFile("s3fd.pth", "test", sha256_prefix=s3fd),
    )
    monkeypatch.setattr(official_weights, "OFFICIAL_FILES", table)
    layout = ModelsLayout(tmp_path)
    # Then the directory is official while both match
    assert layout.weights_kind() == "official"
    # and custom once one file differs, or is missing
    (tmp_path / "s3fd.pth").write_bytes(b"converted s3fd")
    assert layout.weights_kind() == "custom"
    (tmp_path / "s3fd.pth").unlink()
    assert layout.weights_kind() == "custom"
    # and random whenever make-weights marked it, whatever the files
    layout.write_marker(tiny=True, seed=0)
    assert layout.weights_kind() == "random"


def test_an_unpinned_release_file_decides_custom_without_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table with an entry whose digest is not pinned yet
    (tmp_path / "a.bin").write_bytes(b"a")
    table = (OfficialFile("a.bin", "test", sha256=hashlib.sha256(b"a").hexdigest()),)
    table += (OfficialFile("b.bin", "test"),)
    (tmp_path / "b.bin").write_bytes(b"b")
    monkeypatch.setattr(official_weights, "OFFICIAL_FILES", table)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(official_weights, "file_sha256", no_hashing)
    # Then the directory is custom, and no file was read
    assert ModelsLayout(tmp_path).weights_kind() == "custom"


def test_unet_file_is_a_plain_state_dict_with_modern_diffusers_keys(
    tiny_models: ModelsLayout,
) -> None:
    state = torch.load(tiny_models.unet_weights, weights_only=True)
    assert isinstance(state, dict)
    assert "conv_in.weight" in state
    assert state["conv_in.weight"].shape[1] == 8  # masked + reference latents
    assert any(key.endswith("attn2.to_k.weight") for key in state)
    cross = next(v for k, v in state.items() if k.endswith("attn2.to_k.weight"))
    assert cross.shape[1] == 384  # whisper-tiny width


def test_tiny_configs_keep_what_the_pipeline_depends_on(tiny_models: ModelsLayout) -> None:
    unet = json.loads(tiny_models.unet_config.read_text())
    assert (unet["in_channels"], unet["out_channels"], unet["cross_attention_dim"]) == (8, 4, 384)
    vae = json.loads((tiny_models.vae_dir / "config.json").read_text())
    assert len(vae["block_out_channels"]) == 4  # 8x downsampling: 256 -> 32
    whisper = json.loads((tiny_models.whisper_dir / "config.json").read_text())
    assert (whisper["d_model"], whisper["encoder_layers"]) == (384, 4)
    assert whisper["max_source_positions"] == 1500


def test_full_size_configs_are_the_spec_values() -> None:
    assert UNET_CONFIG["block_out_channels"] == [320, 640, 1280, 1280]
    assert UNET_CONFIG["attention_head_dim"] == 8
    assert UNET_CONFIG["down_block_types"][-1] == "DownBlock2D"
    assert UNET_CONFIG["up_block_types"][0] == "UpBlock2D"
    assert (UNET_CONFIG["flip_sin_to_cos"], UNET_CONFIG["freq_shift"]) == (True, 0)
    assert VAE_CONFIG["block_out_channels"] == [128, 256, 512, 512]
    assert (WHISPER_CONFIG["encoder_ffn_dim"], WHISPER_CONFIG["encoder_attention_heads"]) == (
        1536,
        6,
    )
