"""The one contract between the API, the worker, the stack and local mode.

Nothing here imports AWS SDKs, torch or HTTP frameworks: only names, limits and pydantic models,
so the CDK app, the Lambda handlers and the worker can all depend on it.
"""
