"""Regression: the demo hands the CLI its throwaway API key; a key starting with `-` (one in 64
from `secrets.token_urlsafe`) made argparse fail with "expected one argument"."""

from __future__ import annotations

import pytest

from runtime.cli.arguments import build_parser
from runtime.local.demo import connection_args


@pytest.mark.parametrize("key", ["-Abc_123", "--dash-dash", "plain-key"])
def test_the_cli_receives_any_api_key_intact(key: str) -> None:
    # Given the connection arguments the demo builds for a random key
    argv = [*connection_args("http://127.0.0.1:9", key), "jobs"]

    # When the CLI parses them
    parsed = build_parser().parse_args(argv)

    # Then the key and URL arrive unchanged
    assert parsed.api_key == key
    assert parsed.api_url == "http://127.0.0.1:9"
