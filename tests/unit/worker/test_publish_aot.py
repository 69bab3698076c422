"""`python -m runtime.worker.publish_aot` builds a card's AOT packages where a toolchain is, and
puts them where the workers (which cannot build them) look for them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from runtime.engine import aot, aot_build
from runtime.engine.cli import main as engine_cli
from runtime.fileio import file_sha256
from runtime.worker import publish_aot
from runtime.worker.engine_loader import ArtifactSync
from tests.unit.worker.conftest import WEIGHTS_BUCKET

BUCKET = WEIGHTS_BUCKET


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("publish") / "models"
    assert engine_cli(["make-weights", str(root), "--tiny"]) == 0
    return root


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[aot.AotKey, object]]:
    """`aot_build.build_packages` replaced by one that writes a complete package directory at once
    (the real build takes minutes); the keys and Inductor options it was asked for."""
    asked: list[tuple[aot.AotKey, object]] = []

    def build(
        layout: object, cache_dir: Path, key: aot.AotKey, *args: object, **kwargs: object
    ) -> aot_build.BuildReport:
        asked.append((key, kwargs.get("inductor_options")))
        directory = aot.packages_dir(cache_dir, key)
        directory.mkdir(parents=True, exist_ok=True)
        for number, name in enumerate(aot.package_file_names()):
            (directory / name).write_bytes(bytes([number, len(asked)]) * 100)
        names = aot.package_file_names()
        manifest = {
            "key": asdict(key),
            "files": {name: (directory / name).stat().st_size for name in names},
            "sha256": {name: file_sha256(directory / name) for name in names},
        }
        (directory / aot.MANIFEST).write_text(json.dumps(manifest))
        return aot_build.BuildReport(directory, {})

    monkeypatch.setattr(aot_build, "build_packages", build)
    return asked


def test_packages_are_built_once_and_published_where_the_workers_look(
    models: Path, s3: Any, builds: list[tuple[aot.AotKey, object]]
) -> None:
    # Given a models directory and an empty weights bucket
    # When the packages are published for this device
    first = publish_aot.publish(models, BUCKET, "cpu", "float32", s3=s3)
    # Then they were built for the workers' key, the decoder autotuned (built ahead, the longer
    # build is paid once), and uploaded under its prefix, manifest and all
    assert first["uploaded"] is True
    assert [options for _, options in builds] == [{"vae_decoder": aot_build.autotune_options()}]
    assert builds[0][1]["vae_decoder"]["coordinate_descent_tuning"] is True
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert listed == {
        first["prefix"] + name for name in [*aot.package_file_names(), "manifest.json"]
    }
    # and a worker of that key finds them as complete
    worker = ArtifactSync.for_engine(BUCKET, models, "cpu", "float32", s3=s3)
    assert worker is not None
    assert worker.prefix == first["prefix"]
    assert worker.published()
    # When it runs again, then nothing is built or uploaded; with --force both happen again
    again = publish_aot.publish(models, BUCKET, "cpu", "float32", s3=s3)
    assert (again["uploaded"], again["reason"], len(builds)) == (False, "already in the bucket", 1)
    forced = publish_aot.publish(models, BUCKET, "cpu", "float32", s3=s3, force=True)
    assert forced["uploaded"] is True
    assert len(builds) == 2
    body = s3.get_object(Bucket=BUCKET, Key=first["prefix"] + aot.package_file_names()[0])["Body"]
    assert body.read() == bytes([0, 2]) * 100


def test_packages_of_one_dtype_are_not_those_of_another(
    models: Path, s3: Any, builds: list[tuple[aot.AotKey, object]]
) -> None:
    # Given packages published for float32 workers
    published = publish_aot.publish(models, BUCKET, "cpu", "float32", s3=s3)
    # When a float16 worker looks for its own
    worker = ArtifactSync.for_engine(BUCKET, models, "cpu", "float16", s3=s3)
    # Then they are under another prefix, and not there yet
    assert worker is not None
    assert worker.prefix != published["prefix"]
    assert not worker.published()


def test_without_a_bucket_the_command_says_what_is_missing(
    models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MUSETALK_WEIGHTS_BUCKET", raising=False)
    with pytest.raises(SystemExit) as stopped:
        publish_aot.main(["--models", str(models), "--device", "cpu"])
    assert stopped.value.code == 2
    assert "MUSETALK_WEIGHTS_BUCKET" in capsys.readouterr().err


def test_autotuning_can_be_turned_off_for_a_quicker_build(
    models: Path, s3: Any, builds: list[tuple[aot.AotKey, object]]
) -> None:
    # Given no model to autotune / When the packages are built (again: the module's models may
    # have them already) and published
    published = publish_aot.publish(
        models, BUCKET, "cpu", "float32", max_autotune="", force=True, s3=s3
    )
    # Then they were built with Inductor's default options
    assert published["uploaded"] is True
    assert [options for _, options in builds] == [{}]
