"""The API's Lambda entry points: each module here is one function's handler, `lambda_handler`.

They hold only the container's wiring (settings and clients built once per container, event
parsing, metrics flushing) and call the plain functions of `runtime.api`; infra points each
function at `runtime.api.entrypoints.<module>.lambda_handler`.
"""
