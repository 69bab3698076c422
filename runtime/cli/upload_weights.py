"""`upload-weights`: copy a models directory to the weights bucket, checksum manifest last.

The worker trusts only what the manifest lists and verifies every file against it; writing the
manifest after every file is what makes a half-finished upload invisible to workers. Files already
in the bucket with the same checksum are skipped, so an interrupted upload resumes cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.cli.errors import CliError, ExitCode
from runtime.cli.fetch_weights import PARTIAL_DIR
from runtime.common.weights_manifest import WeightsManifest

SHA256_METADATA = "sha256"  # object metadata that lets a re-run skip unchanged files


@dataclass(frozen=True)
class WeightsUpload:
    manifest: WeightsManifest
    uploaded: list[str]
    skipped: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.manifest.files.values())


def upload_weights(
    s3: Any,
    *,
    directory: Path,
    bucket: str,
    model_version: str,
    on_file: Callable[[str, bool], None] = lambda _path, _uploaded: None,
) -> WeightsUpload:
    """Upload every file of `directory` under `<model_version>/`, then the manifest."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    if not directory.is_dir():
        raise CliError(ExitCode.USAGE, f"{directory} is not a directory", field="directory")
    if (directory / PARTIAL_DIR).exists():
        raise CliError(
            ExitCode.USAGE,
            f"{directory} holds an unfinished `musetalk fetch-weights` ({PARTIAL_DIR}/): "
            "run it again to finish before uploading",
            field="directory",
        )
    manifest = WeightsManifest.of_directory(directory, model_version)
    if not manifest.files:
        raise CliError(ExitCode.USAGE, f"{directory} has no files", field="directory")
    uploaded: list[str] = []
    skipped: list[str] = []
    try:
        for relative, entry in manifest.files.items():
            key = manifest.object_key(relative)
            if _has_object(s3, bucket, key, entry.sha256):
                skipped.append(relative)
                on_file(relative, False)
                continue
            s3.upload_file(
                str(directory / relative),
                bucket,
                key,
                ExtraArgs={"Metadata": {SHA256_METADATA: entry.sha256}},
            )
            uploaded.append(relative)
            on_file(relative, True)
        s3.put_object(
            Bucket=bucket,
            Key=manifest.manifest_key,
            Body=manifest.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        raise CliError(
            ExitCode.SERVICE, f"upload to s3://{bucket} failed: {error}", field="bucket"
        ) from None
    return WeightsUpload(manifest=manifest, uploaded=uploaded, skipped=skipped)


def _has_object(s3: Any, bucket: str, key: str, sha256: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return bool(head.get("Metadata", {}).get(SHA256_METADATA) == sha256)
