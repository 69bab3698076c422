"""Bodies no parser should see: deep nesting and invalid UTF-8 are a 400 naming `body`, never
a 500 (the API promises no 5xx for anything a caller sends)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from runtime.api.entrypoints import rest
from tests.integration.api.conftest import Call
from tests.support.api_events import FakeLambdaContext, rest_event


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/uploads", "/v1/avatars"])
def test_json_nested_1000_levels_deep_is_400_on_body(call_api: Call, path: str) -> None:
    # Given a small body nested 1000 levels deep (recursive parsers run out of stack)
    raw = '{"kind": "audio", "pad": ' + "[" * 1000 + "]" * 1000 + "}"

    # When posted
    response = call_api("POST", path, raw_body=raw, headers={"Idempotency-Key": "deep"})

    # Then it is a 400 naming the body and the depth limit
    assert response["statusCode"] == 400
    assert response["json"]["error"]["code"] == "INVALID_REQUEST"
    assert response["json"]["error"]["field"] == "body"
    assert "nested deeper than" in response["json"]["error"]["message"]


def _invalid_utf8(call_api: Call, *, base64_encoded: bool) -> dict[str, Any]:
    if base64_encoded:  # what API Gateway sends for a binary body
        event = rest_event("POST", "/v1/uploads", raw_body="")
        event["body"] = base64.b64encode(b'{"kind": "audio\xff\xfe"}').decode()
        event["isBase64Encoded"] = True
    else:  # a Lambda proxy event whose text carries a lone surrogate
        event = rest_event("POST", "/v1/uploads", raw_body='{"kind": "audio\udcff"}')
    response = rest.lambda_handler(event, FakeLambdaContext())
    response["json"] = json.loads(response["body"])
    return response


@pytest.mark.parametrize("base64_encoded", [True, False])
def test_invalid_utf8_is_400_on_body(call_api: Call, base64_encoded: bool) -> None:
    # Given a body that is not valid UTF-8, When posted
    response = _invalid_utf8(call_api, base64_encoded=base64_encoded)

    # Then it is a 400 naming the body
    assert response["statusCode"] == 400
    assert response["json"]["error"]["field"] == "body"
    assert "UTF-8" in response["json"]["error"]["message"]


def test_ordinary_nesting_still_reaches_the_route(call_api: Call) -> None:
    # Given a valid body with nested strings that look like brackets, When posted
    raw = json.dumps({"kind": "audio", "filename": "[[[[{{{{" * 20})
    response = call_api("POST", "/v1/uploads", raw_body=raw)

    # Then the route answers on the field (not the depth guard)
    assert response["json"] is None or response["json"].get("error", {}).get("field") != "body"
