"""Deployment mistakes in the environment fail at cold start, with the variable named."""

from __future__ import annotations

import json

import pytest

from runtime.api.settings import Settings, SettingsError
from runtime.common.limits import DEFAULT_LIMITS
from runtime.common.names import EnvVar, Lane

BASE = {
    EnvVar.UPLOADS_BUCKET.value: "u",
    EnvVar.OUTPUTS_BUCKET.value: "o",
    EnvVar.AVATAR_CACHE_BUCKET.value: "a",
    EnvVar.JOBS_TABLE.value: "jobs",
    EnvVar.IDEMPOTENCY_TABLE.value: "idem",
    EnvVar.INTERACTIVE_QUEUE_URL.value: "https://sqs/i",
    EnvVar.BATCH_QUEUE_URL.value: "https://sqs/b",
    EnvVar.COMPLETION_TOPIC_ARN.value: "arn:aws:sns:us-east-1:1:t",
    EnvVar.API_KEY_TENANTS.value: json.dumps({"k1": "tenant-a"}),
}


def test_a_complete_environment_is_read() -> None:
    settings = Settings.from_env(BASE)
    assert settings.queue_urls[Lane.BATCH] == "https://sqs/b"
    assert settings.api_key_tenants == {"k1": "tenant-a"}
    assert settings.limits == DEFAULT_LIMITS


def test_a_missing_variable_is_named() -> None:
    env = {k: v for k, v in BASE.items() if k != EnvVar.JOBS_TABLE.value}
    with pytest.raises(SettingsError, match=EnvVar.JOBS_TABLE.value):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "tenants",
    ["not json", json.dumps(["k1"]), json.dumps({"k1": "../other"}), json.dumps({"k": 1})],
)
def test_tenant_mappings_must_map_keys_to_safe_tenant_ids(tenants: str) -> None:
    with pytest.raises(SettingsError, match=EnvVar.API_KEY_TENANTS.value):
        Settings.from_env({**BASE, EnvVar.API_KEY_TENANTS.value: tenants})


def test_limits_come_from_json() -> None:
    custom = DEFAULT_LIMITS.model_copy(update={"max_request_body_bytes": 1000})
    settings = Settings.from_env({**BASE, EnvVar.LIMITS_JSON.value: custom.model_dump_json()})
    assert settings.limits.max_request_body_bytes == 1000
    with pytest.raises(SettingsError, match=EnvVar.LIMITS_JSON.value):
        Settings.from_env({**BASE, EnvVar.LIMITS_JSON.value: "{}"})


def test_limits_must_cover_every_lane() -> None:
    only_batch = DEFAULT_LIMITS.model_copy(
        update={"lanes": {Lane.BATCH: DEFAULT_LIMITS.lanes[Lane.BATCH]}}
    )
    with pytest.raises(SettingsError, match="interactive"):
        Settings.from_env({**BASE, EnvVar.LIMITS_JSON.value: only_batch.model_dump_json()})


def test_browser_origins_are_read_as_a_list() -> None:
    env = {
        **BASE,
        EnvVar.CORS_ALLOWED_ORIGINS.value: '["https://a.example", "http://localhost:8000"]',
    }
    assert Settings.from_env(env).cors_allowed_origins == (
        "https://a.example",
        "http://localhost:8000",
    )
    assert Settings.from_env(BASE).cors_allowed_origins == ()


@pytest.mark.parametrize("raw", ['"https://a.example"', '["*"]', '["null"]', "[1]", "not json"])
def test_a_wildcard_or_malformed_origin_list_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match=EnvVar.CORS_ALLOWED_ORIGINS.value):
        Settings.from_env({**BASE, EnvVar.CORS_ALLOWED_ORIGINS.value: raw})
