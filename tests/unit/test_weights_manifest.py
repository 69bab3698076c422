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
