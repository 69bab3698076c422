"""The one seam between the serve loop and the model: an engine factory named by import path.

`MUSETALK_ENGINE_FACTORY` is `"package.module:attribute[.attribute]"`, a callable
`(models_dir: Path, device: str, dtype: str) -> LipSyncEngine`; the default, `musetalk_engine`
below, loads the MuseTalk engine. It is imported only when the worker starts, so the loop never
imports torch, and tests (or a different model) plug in another engine without touching the
worker.

`MUSETALK_X264_PRESET` picks the default engine's libx264 preset (default the engine's own).
With `MUSETALK_COMPILE=aot` the default engine is compiled from AOTInductor packages (default
`off`: eager models; this image cannot build packages, so they must be built elsewhere first,
docs/engine.md).
Packages depend on the card, the torch build and the weights, and building them takes minutes,
so they are shared through the weights bucket under `aot-artifacts/<model version>/<key
digest>/`: a worker downloads them before it loads the engine, and the first worker of a
combination, which had to build them, uploads them after.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from runtime.common.keys import aot_artifacts_prefix
from runtime.common.names import EnvVar
from runtime.engine.encoder_presets import DEFAULT_PRESET, check_preset
from runtime.engine.engine_contract import LipSyncEngine
from runtime.fileio import file_sha256
from runtime.worker.telemetry import logger

DEFAULT_FACTORY = f"{__name__}:musetalk_engine"
COMPILE_MODES = ("aot", "off")


class EngineFactoryError(ValueError):
    pass


def compile_mode() -> str:
    mode = os.environ.get(EnvVar.COMPILE, "off").strip().lower() or "off"
    if mode not in COMPILE_MODES:
        raise EngineFactoryError(f"{EnvVar.COMPILE} must be one of {COMPILE_MODES}, got {mode!r}")
    return mode


def x264_preset(env: Mapping[str, str] | None = None) -> str:
    """The encoder preset `MUSETALK_X264_PRESET` names (unset: the engine's default). Read by the
    default factory, and checked by the settings so a bad name stops the worker at start."""
    source = os.environ if env is None else env
    preset = source.get(EnvVar.X264_PRESET, "").strip().lower() or DEFAULT_PRESET
    try:
        return check_preset(preset, name=EnvVar.X264_PRESET)
    except ValueError as error:
        raise EngineFactoryError(str(error)) from None


def musetalk_engine(models_dir: Path, device: str, dtype: str) -> LipSyncEngine:
    """The default factory: `MuseTalkEngine.load` takes the settings' device and dtype strings
    itself (and names a bad dtype), so the worker needs no torch import of its own. Compiled,
    the packages come from (and, when built here, go to) the weights bucket if there is one."""
    from runtime.engine.engine import MuseTalkEngine

    compiled = compile_mode() == "aot"
    bucket = os.environ.get(EnvVar.WEIGHTS_BUCKET)
    artifacts = ArtifactSync.for_engine(bucket, models_dir, device, dtype) if compiled else None
    if artifacts is not None:
        artifacts.download()
    engine = MuseTalkEngine.load(
        models_dir,
        device,
        dtype,
        compile_models=compiled,
        aot_packages=compiled,
        encoder_preset=x264_preset(),
    )
    if artifacts is not None and engine.aot and "aot_build" in engine.load_timings_ms:
        artifacts.upload()
    return cast(LipSyncEngine, engine)


class ArtifactSync:
    """The AOT packages of one key between the local cache and the weights bucket.

    Downloads land in a staging directory, each file checked against the manifest's SHA-256,
    and are renamed into place whole; uploads put the manifest last, so a listed manifest means
    a complete set. Failures are logged and never stop the worker: without packages it builds
    them, or falls back to torch.compile.
    """

    def __init__(self, s3: Any, bucket: str, prefix: str, local: Path) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.local = local

    @classmethod
    def for_engine(
        cls, bucket: str | None, models_dir: Path, device: str, dtype: str, *, s3: Any = None
    ) -> ArtifactSync | None:
        if not bucket:
            return None
        import boto3

        from runtime.common.jobs import MODEL_VERSION
        from runtime.engine.model_loading import aot_packages_dir

        key, local = aot_packages_dir(models_dir, device, dtype)
        prefix = aot_artifacts_prefix(MODEL_VERSION, key.digest)
        return cls(s3 or boto3.client("s3"), bucket, prefix, local)

    def published(self) -> bool:
        """Whether the bucket has a complete set (its manifest is uploaded last)."""
        from runtime.engine import aot

        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.prefix + aot.MANIFEST)
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def download(self) -> bool:
        """True when the packages are in place locally (already, or downloaded now)."""
        from runtime.engine import aot

        if (self.local / aot.MANIFEST).is_file():
            return True
        staging: Path | None = None
        try:
            manifest_key = self.prefix + aot.MANIFEST
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                logger.info(
                    "no AOT packages in the weights bucket yet", extra={"prefix": self.prefix}
                )
                return False
            self.local.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.local.parent, prefix=".download-"))
            (staging / aot.MANIFEST).write_bytes(body)
            for name, sha256 in aot.package_files(staging).items():
                if name == aot.MANIFEST:
                    continue
                self.s3.download_file(self.bucket, self.prefix + name, str(staging / name))
                if file_sha256(staging / name) != sha256:
                    raise ValueError(f"checksum mismatch for AOT package file {name}")
            os.replace(staging, self.local)
        except Exception:  # any S3, disk or manifest error: the engine builds instead
            logger.warning("AOT packages not downloaded", exc_info=True)
            return False
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("AOT packages downloaded", extra={"prefix": self.prefix})
        return True

    def upload(self) -> bool:
        from runtime.engine import aot

        try:
            for name in aot.package_files(self.local):  # the manifest comes last
                self.s3.upload_file(str(self.local / name), self.bucket, self.prefix + name)
        except Exception:  # the next worker builds them again; this one runs regardless
            logger.warning("AOT packages not uploaded", exc_info=True)
            return False
        logger.info("AOT packages uploaded", extra={"prefix": self.prefix})
        return True


def start_preload(spec: str) -> threading.Thread | None:
    """For the default factory, import the model libraries (torch, diffusers, transformers: ~9 s
    of a cold start on the benchmark's image) on a thread, so that they load while the weights
    sync; None for any other factory, and for the AOT-compiled engine, whose packages need
    neither library (importing them would only compete with the load). A failure is only logged:
    `load_engine` meets it again."""
    if spec != DEFAULT_FACTORY or compile_mode() == "aot":
        return None

    def preload() -> None:
        try:
            from runtime.engine.model_loading import preload_libraries

            preload_libraries()
        except Exception:
            logger.warning("preloading the model libraries failed", exc_info=True)

    thread = threading.Thread(target=preload, name="preload-libraries", daemon=True)
    thread.start()
    return thread


def load_engine(spec: str, *, models_dir: Path, device: str, dtype: str) -> LipSyncEngine:
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path:
        raise EngineFactoryError(f"engine factory must be 'module:callable', got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise EngineFactoryError(f"{spec!r}: no attribute {attribute!r}") from None
    if not callable(target):
        raise EngineFactoryError(f"{spec!r} is not callable")
    return cast(LipSyncEngine, target(models_dir, device, dtype))
