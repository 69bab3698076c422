"""Capture what one service's logger writes, formatted as in its log stream (JSON)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured_log_lines(logger_name: str) -> Iterator[io.StringIO]:
    """Every line `logger_name` writes while open, in its own handler's format (Powertools JSON).

    A handler rather than capsys: the loggers hold the stream they were built with, which
    pytest's capture does not see in a full run."""
    service_logger = logging.getLogger(logger_name)
    sink = io.StringIO()
    capture = logging.StreamHandler(sink)
    capture.setFormatter(service_logger.handlers[0].formatter)
    service_logger.addHandler(capture)
    try:
        yield sink
    finally:
        service_logger.removeHandler(capture)
