"""The job API: thin aws-lambda-powertools handlers over plain functions.

`handler` serves the REST routes, `sweeper` re-sends jobs whose queue message was never confirmed,
`dead_letters` fails jobs whose messages exhausted their retries. The logic lives in plain modules
(`uploads`, `avatars`, `jobs`) that take their AWS clients as arguments, so tests drive them
directly or through API Gateway events against a local emulator.
"""
