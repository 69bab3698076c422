"""Webhook URL admission: the shared policy (`runtime.common.webhook_targets`) as a 400 naming
`webhook_url`, decided without any DNS lookup (the worker re-checks resolved addresses).

Local mode (`webhook_allow_private`, never set by the stack) admits what its worker and its
redelivery path send to: any http(s) URL with a host, so a receiver on this machine works."""

from __future__ import annotations

from urllib.parse import urlsplit

from runtime.api.errors import invalid
from runtime.common.webhook_targets import WebhookTargetError
from runtime.common.webhook_targets import check_webhook_url as check_target

_FIELD = "webhook_url"


def check_webhook_url(url: str, *, allow_private: bool = False) -> None:
    """Raise a 400 naming `webhook_url` unless it is an https URL to a public host (or, with
    `allow_private`, any http(s) URL with a host)."""
    if allow_private:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise invalid(_FIELD, "webhook_url must be an http(s) URL with a host")
        return
    try:
        check_target(url)
    except WebhookTargetError as error:
        raise invalid(_FIELD, str(error)) from error
