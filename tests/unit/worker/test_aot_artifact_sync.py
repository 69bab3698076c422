"""The worker shares AOT packages through the weights bucket (`engine_loader.ArtifactSync`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.common.keys import aot_artifacts_prefix
from runtime.engine import aot
from runtime.fileio import file_sha256
from runtime.worker.engine_loader import ArtifactSync
from tests.unit.worker.conftest import WEIGHTS_BUCKET

BUCKET = WEIGHTS_BUCKET
PREFIX = aot_artifacts_prefix("v1.5", "0123456789abcdef")


def built_packages(directory: Path) -> Path:
    """A package directory as `aot_build.build_packages` leaves it: files, then the manifest."""
    directory.mkdir(parents=True)
    names = aot.package_file_names()
    for number, name in enumerate(names):
        (directory / name).write_bytes(bytes([number]) * (1000 + number))
    manifest = {
        "key": {"batch_size": 64},
        "files": {name: (directory / name).stat().st_size for name in names},
        "sha256": {name: file_sha256(directory / name) for name in names},
    }
    (directory / aot.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_the_first_worker_uploads_and_the_next_downloads_the_same_files(
    s3: Any, tmp_path: Path
) -> None:
    # Given a worker that built the packages, and one that has none
    built = built_packages(tmp_path / "first" / "aot" / "key")
    second = tmp_path / "second" / "aot" / "key"
    # When the first uploads, and the second downloads
    assert ArtifactSync(s3, BUCKET, PREFIX, built).upload()
    assert ArtifactSync(s3, BUCKET, PREFIX, second).download()
    # Then every file is under the key's prefix, and the second has them byte for byte
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert listed == {PREFIX + path.name for path in built.iterdir()}
    for path in built.iterdir():
        assert (second / path.name).read_bytes() == path.read_bytes()
    # and no staging directory is left beside them
    assert [path.name for path in second.parent.iterdir()] == ["key"]
    # And a worker that already has them downloads nothing
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + aot.MANIFEST)
    assert ArtifactSync(s3, BUCKET, PREFIX, second).download()


def test_no_packages_in_the_bucket_means_build_here(s3: Any, tmp_path: Path) -> None:
    local = tmp_path / "aot" / "key"
    assert not ArtifactSync(s3, BUCKET, PREFIX, local).download()
    assert not local.exists()


def test_a_file_that_does_not_match_its_checksum_is_not_used(s3: Any, tmp_path: Path) -> None:
    # Given packages in the bucket of which one file was altered after the upload
    built = built_packages(tmp_path / "first" / "key")
    ArtifactSync(s3, BUCKET, PREFIX, built).upload()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{aot.UNET}.pt2", Body=b"tampered")
    # When another worker downloads them
    local = tmp_path / "second" / "aot" / "key"
    # Then it refuses them (and will build its own), leaving nothing half-written behind
    assert not ArtifactSync(s3, BUCKET, PREFIX, local).download()
    assert not local.exists()
    assert list(local.parent.iterdir()) == []
