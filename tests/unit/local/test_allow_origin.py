"""`up --allow-origin` takes exact browser origins only, as the stage config does."""

from __future__ import annotations

import pytest

from runtime.local.main import build_parser


def test_exact_origins_are_accepted_and_repeatable() -> None:
    args = build_parser().parse_args(
        ["up", "--allow-origin", "http://127.0.0.1:8080", "--allow-origin", "https://a.example"]
    )
    assert args.allow_origin == ["http://127.0.0.1:8080", "https://a.example"]


@pytest.mark.parametrize(
    "origin", ["*", "null", "http://app.example.com", "https://a.example/", "127.0.0.1:80"]
)
def test_wildcards_paths_and_remote_plain_http_are_refused(
    origin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--allow-origin", origin])
    assert "--allow-origin" in capsys.readouterr().err
