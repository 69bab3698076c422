"""Start-up sync of model weights from the weights bucket into the local models directory.

The manifest (written last by `upload-weights`) lists every file with its checksum; only files
missing locally or with another checksum are downloaded, so a warm restart on the same instance
downloads nothing. Each file lands under a temporary name and is renamed only once its checksum
matches, so a half-downloaded file is never loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.common.weights_manifest import MANIFEST_NAME, WeightsManifest, file_sha256


class WeightsError(RuntimeError):
    """The bucket's weights do not match their manifest."""


@dataclass(frozen=True)
class SyncResult:
    downloaded: tuple[str, ...]
    kept: tuple[str, ...]


def sync_weights(s3: Any, *, bucket: str, model_version: str, models_dir: Path) -> SyncResult:
    manifest_key = f"{model_version}/{MANIFEST_NAME}"
    body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    manifest = WeightsManifest.model_validate(json.loads(body))
    if manifest.model_version != model_version:
        raise WeightsError(
            f"{manifest_key} describes {manifest.model_version!r}, expected {model_version!r}"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    root = models_dir.resolve()
    stale = manifest.stale_files(models_dir)
    for relative in stale:
        target = (models_dir / relative).resolve()
        if not target.is_relative_to(root):
            raise WeightsError(f"manifest path escapes the models directory: {relative!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        s3.download_file(bucket, manifest.object_key(relative), str(partial))
        expected = manifest.files[relative]
        if partial.stat().st_size != expected.size or file_sha256(partial) != expected.sha256:
            partial.unlink()
            raise WeightsError(f"checksum mismatch for {relative!r} in the weights bucket")
        partial.replace(target)
    kept = tuple(name for name in manifest.files if name not in stale)
    return SyncResult(downloaded=tuple(stale), kept=kept)
