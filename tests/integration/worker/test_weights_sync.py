"""Start-up downloads only what the local weights cache lacks, and never a corrupt file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from runtime.common.names import BucketRole
from runtime.common.weights_manifest import WeightsManifest
from runtime.fileio import file_sha256
from runtime.worker.weights_sync import (
    STAMP_NAME,
    SyncResult,
    WeightsError,
    sync_weights,
    sync_when_published,
)
from tests.support.worker_world import WorkerWorld

VERSION = "musetalk-v1.5"


def _publish(world: WorkerWorld, source: Path) -> None:
    """What `upload-weights` does: every file, then the manifest last."""
    manifest = WeightsManifest.of_directory(source, VERSION)
    bucket = world.bucket(BucketRole.WEIGHTS)
    for relative in manifest.files:
        world.s3.upload_file(str(source / relative), bucket, manifest.object_key(relative))
    world.s3.put_object(Bucket=bucket, Key=manifest.manifest_key, Body=manifest.model_dump_json())


def _models(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    (source / "musetalkV15").mkdir(parents=True)
    (source / "musetalkV15" / "unet.pth").write_bytes(b"unet" * 1000)
    (source / "sd-vae" / "config.json").parent.mkdir()
    (source / "sd-vae" / "config.json").write_text('{"latent_channels": 4}')
    return source


def test_a_warm_restart_downloads_nothing_and_a_changed_file_is_fetched_again(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given published weights and an empty local cache
    _publish(world, _models(tmp_path))
    local = tmp_path / "cache"
    bucket = world.bucket(BucketRole.WEIGHTS)

    # When the worker starts the first time, everything is downloaded and matches
    first = sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    assert sorted(first.downloaded) == ["musetalkV15/unet.pth", "sd-vae/config.json"]
    assert (local / "musetalkV15" / "unet.pth").read_bytes() == b"unet" * 1000

    # When it restarts on the same instance, nothing is downloaded
    second = sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    assert second.downloaded == ()

    # When one local file was damaged, only that file is fetched again
    (local / "sd-vae" / "config.json").write_text('{"latent_channels": 8}')
    third = sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    assert third.downloaded == ("sd-vae/config.json",)
    assert (local / "sd-vae" / "config.json").read_text() == '{"latent_channels": 4}'


def test_an_object_that_does_not_match_the_manifest_is_refused(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given a bucket whose file was replaced after the manifest was written
    _publish(world, _models(tmp_path))
    bucket = world.bucket(BucketRole.WEIGHTS)
    world.s3.put_object(Bucket=bucket, Key=f"{VERSION}/musetalkV15/unet.pth", Body=b"tampered")
    local = tmp_path / "cache"

    # When the worker syncs, it refuses and leaves no file behind to be loaded
    with pytest.raises(WeightsError, match=r"unet\.pth"):
        sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    assert not (local / "musetalkV15" / "unet.pth").exists()
    assert not list(local.rglob("*.partial"))


def test_a_restart_trusts_the_stamp_and_hashes_only_a_touched_file(
    world: WorkerWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given weights synced once (every file verified and stamped)
    _publish(world, _models(tmp_path))
    local = tmp_path / "cache"
    bucket = world.bucket(BucketRole.WEIGHTS)
    sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    hashed: list[str] = []

    def counting_sha256(path: Path) -> str:
        hashed.append(path.name)
        return file_sha256(path)

    monkeypatch.setattr("runtime.worker.weights_sync.file_sha256", counting_sha256)

    # When the worker restarts, no file is read to be hashed
    assert sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local) == (
        SyncResult(downloaded=(), kept=("musetalkV15/unet.pth", "sd-vae/config.json"))
    )
    assert hashed == []

    # When one file was rewritten with the same size (a new mtime), only it is hashed again
    config = local / "sd-vae" / "config.json"
    config.write_text('{"latent_channels": 4}')
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000))
    assert sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local).kept
    assert hashed == ["config.json"]

    # When the stamp is unreadable, every file is checked again and the stamp rewritten
    (local / STAMP_NAME).write_text("{not json")
    hashed.clear()
    sync_weights(world.s3, bucket=bucket, model_version=VERSION, models_dir=local)
    assert sorted(hashed) == ["config.json", "unet.pth"]
    assert set(json.loads((local / STAMP_NAME).read_text())) == {
        "musetalkV15/unet.pth",
        "sd-vae/config.json",
    }


def test_without_a_manifest_the_sync_waits_and_reports_until_the_weights_are_published(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given a weights bucket nobody has uploaded to yet
    bucket = world.bucket(BucketRole.WEIGHTS)
    reports: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 2:
            _publish(world, _models(tmp_path))  # the operator uploads while the worker waits
        return False  # no stop requested

    # When the worker syncs, it reports the missing manifest and waits, then syncs once published
    result = sync_when_published(
        world.s3,
        bucket=bucket,
        model_version=VERSION,
        models_dir=tmp_path / "cache",
        wait=wait,
        poll_seconds=7,
        on_missing=lambda: reports.append("missing"),
    )
    assert reports == ["missing", "missing"]
    assert waits == [7, 7]
    assert result is not None
    assert sorted(result.downloaded) == ["musetalkV15/unet.pth", "sd-vae/config.json"]


def test_a_stop_while_waiting_for_the_manifest_ends_the_wait(
    world: WorkerWorld, tmp_path: Path
) -> None:
    result = sync_when_published(
        world.s3,
        bucket=world.bucket(BucketRole.WEIGHTS),
        model_version=VERSION,
        models_dir=tmp_path / "cache",
        wait=lambda seconds: True,  # SIGTERM arrived
        poll_seconds=7,
        on_missing=lambda: None,
    )
    assert result is None


class _ConcurrencyProbe:
    """The S3 client, whose downloads must meet at a barrier: a sync that fetches one file at a
    time never gets two there, and fails (the timeout only bounds a wrong implementation)."""

    def __init__(self, s3: object, parties: int) -> None:
        self._s3 = s3
        self._barrier = threading.Barrier(parties, timeout=30)
        self.configs: list[object] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._s3, name)

    def download_file(self, bucket: str, key: str, filename: str, **kwargs: object) -> None:
        self.configs.append(kwargs.get("Config"))
        self._barrier.wait()
        self._s3.download_file(bucket, key, filename, **kwargs)  # type: ignore[attr-defined]


def test_files_download_at_once_with_ranged_parallel_reads(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given two published files and an S3 client that lets a download on only once both started
    _publish(world, _models(tmp_path))
    probe = _ConcurrencyProbe(world.s3, parties=2)
    bucket = world.bucket(BucketRole.WEIGHTS)

    # When a cold instance syncs
    result = sync_weights(probe, bucket=bucket, model_version=VERSION, models_dir=tmp_path / "c")

    # Then both were in flight together, each with many ranged reads, and both arrived intact
    assert sorted(result.downloaded) == ["musetalkV15/unet.pth", "sd-vae/config.json"]
    assert all(config.max_concurrency >= 16 for config in probe.configs)  # type: ignore[attr-defined]
    assert (tmp_path / "c" / "musetalkV15" / "unet.pth").read_bytes() == b"unet" * 1000
