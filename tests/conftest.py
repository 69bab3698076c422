"""Fixtures every suite shares (pytest accepts `pytest_plugins` only in the top-level conftest)."""

pytest_plugins = ["tests.support.moto_server"]
