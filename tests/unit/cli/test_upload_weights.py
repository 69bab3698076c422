"""`musetalk upload-weights` against a moto server: every file, checksums, manifest last."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from runtime.cli.errors import ExitCode
from runtime.cli.main import main
from runtime.cli.upload_weights import upload_weights
from runtime.common.weights_manifest import MANIFEST_NAME, WeightsManifest


@pytest.fixture
def bucket(emulator_env: str) -> str:
    name = f"weights-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "musetalkV15").mkdir(parents=True)
    (root / "musetalkV15" / "unet.pth").write_bytes(b"unet" * 1000)
    (root / "sd-vae").mkdir()
    (root / "sd-vae" / "config.json").write_text('{"latent_channels": 4}')
    return root


def test_upload_weights_puts_every_file_and_the_manifest_last(bucket: str, models: Path) -> None:
    # Given a models directory and an S3 client that records its calls
    s3 = boto3.client("s3")
    keys_in_order: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        keys_in_order.append(params["Key"])

    s3.meta.events.register("provide-client-params.s3.PutObject", record)

    # When the weights are uploaded
    result = upload_weights(s3, directory=models, bucket=bucket, model_version="v15")

    # Then every file is in the bucket under the version, and the manifest was written last
    assert sorted(result.uploaded) == ["musetalkV15/unet.pth", "sd-vae/config.json"]
    assert keys_in_order[-1] == f"v15/{MANIFEST_NAME}"
    body = s3.get_object(Bucket=bucket, Key=f"v15/{MANIFEST_NAME}")["Body"].read()
    manifest = WeightsManifest.model_validate_json(body)
    assert manifest == WeightsManifest.of_directory(models, "v15")
    unet = s3.get_object(Bucket=bucket, Key="v15/musetalkV15/unet.pth")["Body"].read()
    assert unet == (models / "musetalkV15" / "unet.pth").read_bytes()


def test_a_second_upload_sends_only_changed_files(bucket: str, models: Path) -> None:
    s3 = boto3.client("s3")
    upload_weights(s3, directory=models, bucket=bucket, model_version="v15")
    (models / "sd-vae" / "config.json").write_text('{"latent_channels": 8}')

    again = upload_weights(s3, directory=models, bucket=bucket, model_version="v15")

    assert again.uploaded == ["sd-vae/config.json"]
    assert again.skipped == ["musetalkV15/unet.pth"]
    manifest = WeightsManifest.model_validate_json(
        s3.get_object(Bucket=bucket, Key=f"v15/{MANIFEST_NAME}")["Body"].read()
    )
    assert manifest.stale_files(models) == []


def test_the_command_reports_json_and_reads_the_bucket_from_the_environment(
    bucket: str, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSETALK_WEIGHTS_BUCKET", bucket)
    stdout = io.StringIO()

    code = main(["--json", "upload-weights", str(models), "--model-version", "v15"], stdout=stdout)

    assert code == ExitCode.OK
    report = json.loads(stdout.getvalue())
    assert report["bucket"] == bucket
    assert report["manifest_key"] == f"v15/{MANIFEST_NAME}"
    assert report["files"] == 2


def test_a_missing_bucket_is_a_service_error_naming_the_bucket(
    emulator_env: str, models: Path
) -> None:
    stdout = io.StringIO()

    code = main(["--json", "upload-weights", str(models), "--bucket", "no-such-b"], stdout=stdout)

    assert code == ExitCode.SERVICE
    assert json.loads(stdout.getvalue())["error"]["field"] == "bucket"


def test_an_empty_directory_is_refused(emulator_env: str, tmp_path: Path) -> None:
    stderr = io.StringIO()

    code = main(["upload-weights", str(tmp_path), "--bucket", "b"], stderr=stderr)

    assert code == ExitCode.USAGE
    assert "no files" in stderr.getvalue()


def test_a_directory_with_an_unfinished_fetch_is_refused(
    emulator_env: str, models: Path, bucket: str
) -> None:
    partial = models / ".fetch-partial" / "face-parse-bisent" / "79999_iter.pth.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a file")
    stderr = io.StringIO()

    code = main(["upload-weights", str(models), "--bucket", bucket], stderr=stderr)

    assert code == ExitCode.USAGE
    assert "unfinished `musetalk fetch-weights`" in stderr.getvalue()
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
