"""The local AWS emulator: moto in server mode on a free localhost port, in a thread.

Server mode (not moto's in-process mocks) because the API gateway and the worker are separate
processes that must see the same state over real HTTP, exactly as they would see AWS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer

# Dummy credentials: the emulator accepts any, and real ones must never reach it or leave with it.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",  # nosec B105 (the emulator's dummy credential)
}


def local_session(region_name: str) -> boto3.Session:
    """A session with the emulator's dummy credentials, whatever the host's environment says."""
    return boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region_name,
    )


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on 127.0.0.1 (never on a public interface) and yield its endpoint URL."""
    # werkzeug's access log would bury local mode's own output (and logs query-string signatures).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
