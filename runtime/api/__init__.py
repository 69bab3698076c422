"""The job API: thin aws-lambda-powertools entry points over plain functions.

`entrypoints/` holds one module per Lambda (`rest`, `sweeper`, `dead_letters`,
`webhook_deliveries`), each with its `lambda_handler`. The REST entry point resolves `routes`
(errors mapped in `error_responses`, idempotent submission in `idempotent_submit`). The logic
lives in plain modules (`uploads`, `avatars`, `jobs`, `cancellation`, `sweeper`, ...) that take an
`ApiContext`; every DynamoDB call goes through `job_table.JobTable`. Tests drive them directly or
through API Gateway events against a local emulator.
"""
