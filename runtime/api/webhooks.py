"""Webhook URL admission: the shared policy (`runtime.common.webhook_targets`) as a 400 naming
`webhook_url`, decided without any DNS lookup (the worker re-checks resolved addresses)."""

from __future__ import annotations

from runtime.api.errors import invalid
from runtime.common.webhook_targets import WebhookTargetError
from runtime.common.webhook_targets import check_webhook_url as check_target

_FIELD = "webhook_url"


def check_webhook_url(url: str) -> None:
    """Raise a 400 naming `webhook_url` unless it is an https URL to a public host."""
    try:
        check_target(url)
    except WebhookTargetError as error:
        raise invalid(_FIELD, str(error)) from error
