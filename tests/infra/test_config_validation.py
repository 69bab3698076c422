"""Stage configs the stack refuses before synthesizing anything."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra.config import STAGES, stage_config
from infra.stacks.musetalk_stack import validate_config
from runtime.engine.encoder_presets import DEFAULT_PRESET


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_shipped_stages_are_valid(stage: str) -> None:
    validate_config(stage_config(stage))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task_stop_timeout_seconds": 300}, "task_stop_timeout_seconds"),
        ({"log_retention_days": 10}, "log_retention_days"),
        ({"visibility_timeout_seconds": 40}, "heartbeats"),
        ({"tenants": ("acme", "acme")}, "tenants"),
        ({"tenants": ("bad/tenant",)}, "tenants"),
        ({"cors_allowed_origins": ("*",)}, "cors_allowed_origins"),
        ({"cors_allowed_origins": ("null",)}, "cors_allowed_origins"),
        ({"cors_allowed_origins": ("https://app.example.com/",)}, "cors_allowed_origins"),
        ({"cors_allowed_origins": ("http://app.example.com",)}, "cors_allowed_origins"),
        ({"worker_compile": "jit"}, "worker_compile"),
        ({"worker_x264_preset": "fastest"}, "worker_x264_preset must be one of ultrafast"),
        # The sweep keeps the lane queues awake; SQS lets a queue sleep after 6 idle hours
        ({"sweeper_interval_minutes": 6 * 60}, "sweeper_interval_minutes"),
        ({"sweeper_interval_minutes": 61}, "sweeper_interval_minutes"),
        ({"sweeper_interval_minutes": 0}, "sweeper_interval_minutes"),
    ],
)
def test_invalid_stage_config_is_rejected_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    config = replace(stage_config("dev"), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def test_interactive_lane_must_keep_a_warm_task() -> None:
    dev = stage_config("dev")
    config = replace(dev, interactive=replace(dev.interactive, min_tasks=0))
    with pytest.raises(ValueError, match="min_tasks"):
        validate_config(config)


def test_the_stack_offers_exactly_the_compile_modes_the_worker_accepts() -> None:
    from infra.stacks.musetalk_stack import WORKER_COMPILE_MODES
    from runtime.worker.engine_loader import COMPILE_MODES

    assert set(WORKER_COMPILE_MODES) == set(COMPILE_MODES)


def test_the_stage_passes_its_encoder_preset_to_the_workers() -> None:
    from infra.stacks.musetalk_stack import _worker_settings

    dev = stage_config("dev")
    chosen = replace(dev, worker_x264_preset="veryfast")
    validate_config(chosen)
    assert _worker_settings(chosen, chosen.batch).x264_preset == "veryfast"
    assert _worker_settings(dev, dev.batch).x264_preset == DEFAULT_PRESET


def test_unknown_stage_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        stage_config("staging")
