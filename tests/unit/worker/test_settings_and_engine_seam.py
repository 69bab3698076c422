"""Start-up refuses bad configuration by name, and the engine seam loads by import path."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from runtime.common.names import EnvVar, Lane
from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.worker.config import DEFAULT_ENGINE_FACTORY, SettingsError, WorkerSettings
from runtime.worker.engine_loader import EngineFactoryError, load_engine, x264_preset
from tests.support.small_engine import SmallEngine

BASE = {
    EnvVar.UPLOADS_BUCKET: "u",
    EnvVar.OUTPUTS_BUCKET: "o",
    EnvVar.AVATAR_CACHE_BUCKET: "a",
    EnvVar.JOBS_TABLE: "t",
    EnvVar.LANES: "batch, interactive",
    EnvVar.INTERACTIVE_QUEUE_URL: "https://sqs/i",
    EnvVar.BATCH_QUEUE_URL: "https://sqs/b",
    EnvVar.COMPLETION_TOPIC_ARN: "arn:aws:sns:us-east-1:1:t",
    EnvVar.MODELS_DIR: "/models",
}


def test_lanes_keep_the_configured_priority_order_and_defaults_apply() -> None:
    settings = WorkerSettings.from_env({str(k): v for k, v in BASE.items()})
    assert [lane for lane, _ in settings.lanes] == [Lane.BATCH, Lane.INTERACTIVE]
    assert settings.engine_factory == DEFAULT_ENGINE_FACTORY
    assert settings.device == "cuda"
    assert settings.weights_bucket is None
    assert settings.share_render_cache_across_tenants is False  # renders are per tenant


def test_renders_are_shared_across_tenants_only_when_switched_on() -> None:
    on = {**{str(k): v for k, v in BASE.items()}, EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS: "true"}
    assert WorkerSettings.from_env(on).share_render_cache_across_tenants is True


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({EnvVar.JOBS_TABLE: ""}, EnvVar.JOBS_TABLE),
        ({EnvVar.LANES: "interactive,gold"}, EnvVar.LANES),
        ({EnvVar.HEARTBEAT_SECONDS: "soon"}, EnvVar.HEARTBEAT_SECONDS),
        ({EnvVar.LANES: "batch", EnvVar.BATCH_QUEUE_URL: ""}, EnvVar.BATCH_QUEUE_URL),
        ({EnvVar.LIMITS_JSON: '{"lanes": 3}'}, EnvVar.LIMITS_JSON),
        ({EnvVar.HEARTBEAT_SECONDS: "120"}, EnvVar.HEARTBEAT_SECONDS),
        (
            {EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS: "yes"},
            EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS,
        ),
        ({EnvVar.X264_PRESET: "fastest"}, EnvVar.X264_PRESET),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(change: dict[str, str], named: str) -> None:
    env = {str(k): v for k, v in {**BASE, **change}.items()}
    with pytest.raises(SettingsError, match=str(named)):
        WorkerSettings.from_env(env)


def test_the_engine_factory_is_imported_by_path_and_called_once(tmp_path: Path) -> None:
    engine = load_engine(
        "tests.support.small_engine:load", models_dir=tmp_path, device="cpu", dtype="float32"
    )
    assert isinstance(engine, SmallEngine)


@pytest.mark.parametrize(
    "spec", ["tests.support.small_engine", "tests.support.small_engine:missing", ":load"]
)
def test_a_bad_engine_factory_is_refused_clearly(spec: str, tmp_path: Path) -> None:
    with pytest.raises(EngineFactoryError):
        load_engine(spec, models_dir=tmp_path, device="cpu", dtype="float32")


def test_the_default_factory_hands_the_settings_to_the_musetalk_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the engine module, stood in here so the seam is tested without loading models
    calls: list[tuple[object, ...]] = []

    class RecordingEngine:
        @classmethod
        def load(cls, *args: object, **kwargs: object) -> str:
            calls.append((*args, kwargs))
            return "engine"

    module = types.ModuleType("runtime.engine.engine")
    module.MuseTalkEngine = RecordingEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime.engine.engine", module)

    monkeypatch.delenv(EnvVar.WEIGHTS_BUCKET, raising=False)  # no packages to share
    monkeypatch.delenv(EnvVar.COMPILE, raising=False)
    monkeypatch.delenv(EnvVar.X264_PRESET, raising=False)
    # When the worker loads the default factory with its string settings, by default and with
    # AOT compilation switched on
    engine = load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float16")
    monkeypatch.setenv(EnvVar.COMPILE, "aot")
    load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float16")

    # Then MuseTalkEngine.load got them (it turns strings into torch objects itself), eager
    # unless AOT packages are asked for
    assert engine == "engine"
    preset = {"encoder_preset": DEFAULT_PRESET}
    off = {"compile_models": False, "aot_packages": False, **preset}
    on = {"compile_models": True, "aot_packages": True, **preset}
    assert calls == [(tmp_path, "cpu", "float16", off), (tmp_path, "cpu", "float16", on)]
    # and a value it does not know stops the start naming the variable
    monkeypatch.setenv(EnvVar.COMPILE, "jit")
    with pytest.raises(EngineFactoryError, match=EnvVar.COMPILE):
        load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float16")


def test_the_encoder_preset_defaults_to_the_engines_and_can_be_set() -> None:
    env = {str(k): v for k, v in BASE.items()}
    assert x264_preset(env) == DEFAULT_PRESET == "superfast"
    chosen = {**env, EnvVar.X264_PRESET: " VeryFast "}
    WorkerSettings.from_env(chosen)  # accepted at start
    assert x264_preset(chosen) == "veryfast"


def test_the_default_factory_loads_the_engine_with_the_configured_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the engine module stood in (no models loaded) and a worker set to veryfast
    presets: list[object] = []

    class RecordingEngine:
        @classmethod
        def load(cls, *args: object, **kwargs: object) -> str:
            presets.append(kwargs["encoder_preset"])
            return "engine"

    module = types.ModuleType("runtime.engine.engine")
    module.MuseTalkEngine = RecordingEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime.engine.engine", module)
    monkeypatch.delenv(EnvVar.WEIGHTS_BUCKET, raising=False)
    monkeypatch.delenv(EnvVar.COMPILE, raising=False)
    monkeypatch.setenv(EnvVar.X264_PRESET, "veryfast")

    # When the default factory loads the engine
    load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float16")

    # Then the engine encodes with that preset
    assert presets == ["veryfast"]
    # and a name x264 does not have stops the start naming the variable and the choices
    monkeypatch.setenv(EnvVar.X264_PRESET, "fastest")
    with pytest.raises(EngineFactoryError, match=f"{EnvVar.X264_PRESET} must be one of ultrafast"):
        load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float16")


def test_the_default_factory_refuses_an_unknown_dtype_by_name(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # When the worker is configured with a dtype torch does not have
    # Then start-up fails naming it (before any model is read)
    with pytest.raises(ValueError, match="dtype 'float99'"):
        load_engine(DEFAULT_ENGINE_FACTORY, models_dir=tmp_path, device="cpu", dtype="float99")


def test_segment_encoders_default_from_the_host_and_can_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a 16-core host and a 4-core host
    env = {str(k): v for k, v in BASE.items()}
    monkeypatch.setattr("runtime.engine.engine_contract.os.cpu_count", lambda: 16)
    assert WorkerSettings.from_env(env).segment_encoders == 2
    monkeypatch.setattr("runtime.engine.engine_contract.os.cpu_count", lambda: 4)
    assert WorkerSettings.from_env(env).segment_encoders == 1

    # When the variable is set / Then it wins, and a bad value is named
    env[EnvVar.SEGMENT_ENCODERS] = "3"
    assert WorkerSettings.from_env(env).segment_encoders == 3
    env[EnvVar.SEGMENT_ENCODERS] = "many"
    with pytest.raises(SettingsError, match=EnvVar.SEGMENT_ENCODERS):
        WorkerSettings.from_env(env)


def test_reading_the_worker_settings_imports_neither_pyav_nor_torch() -> None:
    # Given a fresh interpreter (this one may have imported both already)
    probe = (
        "import sys, runtime.worker.config; "
        "print(sorted(m for m in ('av', 'torch') if m in sys.modules))"
    )
    # When it imports the worker's settings
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    # Then the torch-free seam held: no decoder and no model framework came with them
    assert result.stdout.strip() == "[]"
