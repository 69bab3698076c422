"""Request bodies no parser should see, refused before any route runs.

A body that is not UTF-8 or nests deeper than any of our documents made the API answer 500: the
JSON parsers recurse once per level (Python's stack runs out near 1000) and decoding raised
before validation could name the field. Both are a 400 on `body` instead.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

MAX_BODY_DEPTH = 32  # our documents nest 3 levels; the parsers recurse per level


def body_problem(event: Mapping[str, Any]) -> str | None:
    """Why the body cannot be parsed safely (not UTF-8, nested deeper than MAX_BODY_DEPTH), or
    None. Checked before any parser sees it: both made the API answer 500."""
    body = event.get("body")
    if not isinstance(body, str) or not body:
        return None
    try:
        raw = (
            base64.b64decode(body, validate=False)
            if event.get("isBase64Encoded")
            else body.encode("utf-8", "surrogatepass")
        )
        text = raw.decode("utf-8")
    except (ValueError, UnicodeError):
        return "body: the request body is not valid UTF-8"
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_BODY_DEPTH:
        return f"body: JSON nested deeper than {MAX_BODY_DEPTH} levels"
    return None
