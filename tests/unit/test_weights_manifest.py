"""The weights manifest finds exactly the files a worker must (re)download."""

from pathlib import Path

from runtime.common.weights_manifest import WeightsManifest


def test_stale_files_lists_missing_and_changed_files_only(tmp_path: Path) -> None:
    source = tmp_path / "models"
    (source / "sd-vae").mkdir(parents=True)
    (source / "sd-vae" / "config.json").write_text("{}")
    (source / "unet.pth").write_bytes(b"weights")
    manifest = WeightsManifest.of_directory(source, "v15")

    cache = tmp_path / "cache"
    (cache / "sd-vae").mkdir(parents=True)
    (cache / "sd-vae" / "config.json").write_text("{}")  # same content
    (cache / "unet.pth").write_bytes(b"weightz")  # same size, other content

    assert manifest.stale_files(cache) == ["unet.pth"]
    assert manifest.stale_files(source) == []
    assert manifest.object_key("sd-vae/config.json") == "v15/sd-vae/config.json"
    assert WeightsManifest.model_validate_json(manifest.model_dump_json()) == manifest


def test_local_bookkeeping_is_never_published(tmp_path: Path) -> None:
    # Given a models directory the engine and a fetch have left their hidden files in
    (tmp_path / "unet.pth").write_bytes(b"weights")
    (tmp_path / ".official-check.json").write_text("{}")
    (tmp_path / ".fetch-partial").mkdir()
    (tmp_path / ".fetch-partial" / "vae.bin").write_bytes(b"half")
    # Then the manifest lists the weights only
    assert list(WeightsManifest.of_directory(tmp_path, "v15").files) == ["unet.pth"]
