"""The one Logger and Tracer of the API Lambdas (REST handler, sweeper, dead-letter handler).

All three log as service `musetalk-api` (the function name on each line tells them apart), and
the plain modules log through the same logger, so the correlation id set by a handler is on every
line, whichever module wrote it.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer

SERVICE = "musetalk-api"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
