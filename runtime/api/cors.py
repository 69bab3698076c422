"""CORS headers on the API's answers, for browser pages such as the playground.

API Gateway answers the preflight (`OPTIONS`, a mock integration the stack adds per route for the
stage's origins) and its own errors; every answer of this Lambda, errors before routing included,
gets the headers here when the request's `Origin` is one of the stage's origins
(`MUSETALK_CORS_ALLOWED_ORIGINS`). Other origins get none, so the browser withholds the answer.
The key is a header the page sends, never a cookie, so no credentials are allowed.
"""

from __future__ import annotations

import re

from aws_lambda_powertools.event_handler.api_gateway import CORSConfig

# What a page may send besides the CORS-safelisted headers (Powertools adds Content-Type,
# X-Api-Key and the AWS signing headers to these).
REQUEST_HEADERS = ("Idempotency-Key", "X-Correlation-Id")
# What a page may read besides the CORS-safelisted response headers.
EXPOSED_HEADERS = ("X-Correlation-Id", "Location", "Retry-After")
# What a preflight allows: JSON's Content-Type (not CORS-safelisted) and the key, on top.
PREFLIGHT_HEADERS = ("Content-Type", "X-Api-Key", *REQUEST_HEADERS)
PREFLIGHT_MAX_AGE_SECONDS = 600
# An origin as browsers send it: https with a host (http only on this machine), an optional port,
# nothing after. Never `*` (any site) or `null` (sandboxed frames and files).
_ORIGIN = re.compile(
    r"https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?|http://(localhost|127\.0\.0\.1)(:\d{1,5})?"
)


def is_browser_origin(origin: str) -> bool:
    return _ORIGIN.fullmatch(origin) is not None


def cors_headers(origin: str, allowed_origins: tuple[str, ...]) -> dict[str, str]:
    """The CORS headers for a request from `origin`; none when it is not allowed."""
    if not allowed_origins:
        return {}
    first, *extra = allowed_origins
    config = CORSConfig(
        allow_origin=first,
        extra_origins=extra,
        allow_headers=list(REQUEST_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
    )
    # The answer depends on the Origin header, so a shared cache must key on it.
    return {**config.to_dict(origin), "Vary": "Origin"}
