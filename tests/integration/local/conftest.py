"""Fixtures of the local-mode tests: the shared moto server, emptied for each module (as a fresh
emulator would be), and a session with its dummy credentials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.moto_server import local_session, reset_moto


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> str:
    reset_moto(moto_endpoint)
    return moto_endpoint


@pytest.fixture(scope="module")
def session() -> Any:
    return local_session()
