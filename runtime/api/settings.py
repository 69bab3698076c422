"""Configuration of the API Lambdas, read once from the `EnvVar` environment variables.

The stack (and local mode) sets these; nothing else in `runtime/api` reads the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.api.cors import is_browser_origin
from runtime.common.keys import is_safe_id
from runtime.common.limits import DEFAULT_LIMITS, Limits
from runtime.common.names import EnvVar, Lane

DEFAULT_JOB_RECORD_TTL_DAYS = 7


class SettingsError(RuntimeError):
    """A deployment mistake (missing or malformed variable): fail loudly at cold start."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    stage: str
    uploads_bucket: str
    outputs_bucket: str
    avatar_cache_bucket: str
    jobs_table: str
    idempotency_table: str
    queue_urls: Mapping[Lane, str]
    completion_topic_arn: str
    api_key_tenants: Mapping[str, str]
    limits: Limits
    job_record_ttl_days: int
    # The webhook deliveries queue; None where webhooks are not deployed (redelivery -> 503).
    webhook_queue_url: str | None = None
    # The undeliverable webhooks' queue; the sweeper keeps it awake for its alarm (None: not).
    webhook_dead_letter_queue_url: str | None = None
    webhook_secret_arn: str | None = None  # the webhook-deliveries Lambda only
    webhook_allow_private: bool = False  # local mode only: the emulator's http receivers
    cors_allowed_origins: tuple[str, ...] = ()  # browser origins answered with CORS headers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def required(name: EnvVar) -> str:
            value = env.get(name.value, "")
            if not value:
                raise SettingsError(f"environment variable {name.value} is not set")
            return value

        limits_json = env.get(EnvVar.LIMITS_JSON.value)
        try:
            limits = Limits.model_validate_json(limits_json) if limits_json else DEFAULT_LIMITS
        except ValueError as error:
            raise SettingsError(f"{EnvVar.LIMITS_JSON.value} is not valid Limits JSON") from error
        missing = set(Lane) - set(limits.lanes)
        if missing:
            raise SettingsError(f"{EnvVar.LIMITS_JSON.value} has no limits for {sorted(missing)}")
        return cls(
            stage=env.get(EnvVar.STAGE.value, "dev"),
            uploads_bucket=required(EnvVar.UPLOADS_BUCKET),
            outputs_bucket=required(EnvVar.OUTPUTS_BUCKET),
            avatar_cache_bucket=required(EnvVar.AVATAR_CACHE_BUCKET),
            jobs_table=required(EnvVar.JOBS_TABLE),
            idempotency_table=required(EnvVar.IDEMPOTENCY_TABLE),
            queue_urls={
                Lane.INTERACTIVE: required(EnvVar.INTERACTIVE_QUEUE_URL),
                Lane.BATCH: required(EnvVar.BATCH_QUEUE_URL),
            },
            completion_topic_arn=required(EnvVar.COMPLETION_TOPIC_ARN),
            api_key_tenants=_parse_tenants(required(EnvVar.API_KEY_TENANTS)),
            limits=limits,
            job_record_ttl_days=int(
                env.get(EnvVar.JOB_RECORD_TTL_DAYS.value, DEFAULT_JOB_RECORD_TTL_DAYS)
            ),
            webhook_queue_url=env.get(EnvVar.WEBHOOK_QUEUE_URL.value) or None,
            webhook_dead_letter_queue_url=(
                env.get(EnvVar.WEBHOOK_DEAD_LETTER_QUEUE_URL.value) or None
            ),
            webhook_secret_arn=env.get(EnvVar.WEBHOOK_SECRET_ARN.value) or None,
            webhook_allow_private=env.get(EnvVar.WEBHOOK_ALLOW_PRIVATE.value) == "true",
            cors_allowed_origins=_parse_origins(env.get(EnvVar.CORS_ALLOWED_ORIGINS.value) or "[]"),
        )


def _parse_tenants(raw: str) -> dict[str, str]:
    """`{api_key_id: tenant}`; tenants must be safe ids because they become S3 prefixes."""
    try:
        mapping = json.loads(raw)
    except ValueError as error:
        raise SettingsError(f"{EnvVar.API_KEY_TENANTS.value} is not JSON") from error
    if not isinstance(mapping, dict) or not all(
        isinstance(key, str) and isinstance(tenant, str) and is_safe_id(tenant)
        for key, tenant in mapping.items()
    ):
        raise SettingsError(
            f"{EnvVar.API_KEY_TENANTS.value} must map API key ids to tenant ids [A-Za-z0-9_-]"
        )
    return dict(mapping)


def _parse_origins(raw: str) -> tuple[str, ...]:
    """`["https://app.example.com", ...]`: exact origins, never a wildcard."""
    try:
        origins = json.loads(raw)
    except ValueError as error:
        raise SettingsError(f"{EnvVar.CORS_ALLOWED_ORIGINS.value} is not JSON") from error
    if not isinstance(origins, list) or not all(
        isinstance(origin, str) and is_browser_origin(origin) for origin in origins
    ):
        raise SettingsError(
            f"{EnvVar.CORS_ALLOWED_ORIGINS.value} must be a JSON list of exact origins"
        )
    return tuple(origins)
