"""Start-up sync of model weights from the weights bucket into the local models directory.

The manifest (written last by `upload-weights`) lists every file with its checksum; only files
missing locally or with another checksum are downloaded, so a warm restart on the same instance
downloads nothing. Each file lands under a temporary name and is renamed only once its checksum
matches, so a half-downloaded file is never loaded.

Hashing every local file on every start would cost seconds (the UNet alone is 3.4 GB), so a
stamp beside the weights records, per file, the size and modification time it had when its
checksum last matched the manifest: a file whose size, mtime and manifest digest still match
its stamp is trusted without reading it; anything else is hashed again.

A stack can be deployed before anyone uploads weights (docs/deploy.md): a worker that finds no
manifest stays up and polls for it (`sync_when_published`) instead of exiting, so the ECS service
does not crash-loop into its circuit breaker and roll the stack back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from runtime.common.weights_manifest import MANIFEST_NAME, WeightsManifest
from runtime.engine.layout import VERIFIED_STAMP_NAME
from runtime.fileio import file_sha256, write_atomic
from runtime.worker.telemetry import logger

STAMP_NAME = VERIFIED_STAMP_NAME  # in the models directory: {path: [size, mtime_ns, sha256]}
# A cold instance's sync is mostly the UNet (3.4 GB). S3 serves one connection at roughly
# 100 MB/s; parallel byte-range GETs reach the instance's network bandwidth (AWS's S3 performance
# guidelines): 32 ranges of 32 MiB in flight per file (boto3's default: 10 of 8 MiB), and
# several files at once, so one file's checksum overlaps the others' downloads.
TRANSFER = TransferConfig(multipart_chunksize=32 * 1024**2, max_concurrency=32)
PARALLEL_FILES = 4


class WeightsError(RuntimeError):
    """The bucket's weights do not match their manifest."""


class ManifestMissing(WeightsError):
    """No manifest yet: the weights were never uploaded (or the upload is not finished)."""


@dataclass(frozen=True)
class SyncResult:
    downloaded: tuple[str, ...]
    kept: tuple[str, ...]


def sync_weights(s3: Any, *, bucket: str, model_version: str, models_dir: Path) -> SyncResult:
    manifest_key = f"{model_version}/{MANIFEST_NAME}"
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise ManifestMissing(f"s3://{bucket}/{manifest_key} does not exist yet") from None
        raise
    manifest = WeightsManifest.model_validate(json.loads(body))
    if manifest.model_version != model_version:
        raise WeightsError(
            f"{manifest_key} describes {manifest.model_version!r}, expected {model_version!r}"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    root = models_dir.resolve()
    stamps = _read_stamps(models_dir / STAMP_NAME)
    stale = _stale_files(manifest, models_dir, stamps)
    targets = {}
    for relative in stale:  # every path checked before anything is downloaded
        target = (models_dir / relative).resolve()
        if not target.is_relative_to(root):
            raise WeightsError(f"manifest path escapes the models directory: {relative!r}")
        targets[relative] = target

    def fetch(relative: str) -> None:
        target = targets[relative]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        s3.download_file(bucket, manifest.object_key(relative), str(partial), Config=TRANSFER)
        expected = manifest.files[relative]
        if partial.stat().st_size != expected.size or file_sha256(partial) != expected.sha256:
            partial.unlink()
            raise WeightsError(f"checksum mismatch for {relative!r} in the weights bucket")
        partial.replace(target)

    with ThreadPoolExecutor(PARALLEL_FILES, thread_name_prefix="weights") as pool:
        list(pool.map(fetch, stale))  # the first failure is raised here
    _write_stamps(models_dir / STAMP_NAME, manifest, models_dir)
    kept = tuple(name for name in manifest.files if name not in stale)
    return SyncResult(downloaded=tuple(stale), kept=kept)


def sync_when_published(
    s3: Any,
    *,
    bucket: str,
    model_version: str,
    models_dir: Path,
    wait: Callable[[float], bool],
    poll_seconds: float,
    on_missing: Callable[[], None],
) -> SyncResult | None:
    """`sync_weights` once the manifest exists. While it does not, `on_missing()` reports it and
    `wait(poll_seconds)` pauses; a wait that returns True (stop requested) ends with None."""
    while True:
        try:
            return sync_weights(
                s3, bucket=bucket, model_version=model_version, models_dir=models_dir
            )
        except ManifestMissing:
            on_missing()
            if wait(poll_seconds):
                return None


def _stamp(path: Path, sha256: str) -> list[object]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, sha256]


def _stale_files(
    manifest: WeightsManifest, models_dir: Path, stamps: dict[str, list[object]]
) -> list[str]:
    """Files missing or differing from the manifest; a stamped, unchanged file is not read."""
    stale = []
    for relative, entry in manifest.files.items():
        local = models_dir / relative
        if not local.is_file() or local.stat().st_size != entry.size:
            stale.append(relative)
        elif stamps.get(relative) == _stamp(local, entry.sha256):
            continue  # verified against this digest before, and untouched since
        elif file_sha256(local) != entry.sha256:
            stale.append(relative)
    return stale


def _read_stamps(path: Path) -> dict[str, list[object]]:
    try:
        stamps = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        logger.warning("unreadable weights stamp; every file is checked again")
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(path: Path, manifest: WeightsManifest, models_dir: Path) -> None:
    """Every manifest file is verified now: stamp it (written whole, then renamed in place)."""
    stamps = {
        relative: _stamp(models_dir / relative, entry.sha256)
        for relative, entry in manifest.files.items()
    }
    write_atomic(path, json.dumps(stamps).encode())
