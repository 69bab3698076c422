"""The API's reads and writes of the jobs table: every DynamoDB call the API makes is here.

One table holds several kinds of item, told apart by the partition key's prefix: jobs (`JOB#`),
uploads (`UPLOAD#`), avatars (`AVATAR#`) and the lanes' render statistics (`LANE#`, written by
workers). The conditions below are the API's side of the job contract: a job is created once
per id, a final status is never left, and `unsent_lane` is cleared only once its message is out.
The worker's side is `runtime.worker.job_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from runtime.common.events import (
    EVENTS_ATTRIBUTE,
    JobEvent,
    append_clause,
    append_event,
    event_item,
)
from runtime.common.jobs import JobError, JobStatus
from runtime.common.names import JobsTable
from runtime.common.records import job_pk, lane_stats_pk, tenant_kind

_BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
_UNSENT = JobsTable.UNSENT_INDEX_PARTITION_KEY


def upload_pk(tenant: str, upload_id: str) -> str:
    return f"UPLOAD#{tenant}#{upload_id}"


def avatar_pk(tenant: str, avatar_id: str) -> str:
    return f"AVATAR#{tenant}#{avatar_id}"


def is_conditional_failure(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _final_statuses() -> dict[str, str]:
    """The values of `NOT #status IN (:s, :f, :c, :e)`: a final status is never left."""
    return {
        ":s": JobStatus.SUCCEEDED.value,
        ":f": JobStatus.FAILED.value,
        ":c": JobStatus.CANCELLED.value,
        ":e": JobStatus.EXPIRED.value,
    }


class JobTable:
    """The jobs table as the API uses it; wraps a boto3 DynamoDB Table resource."""

    def __init__(self, table: Any) -> None:
        self._table = table

    # --- any item ------------------------------------------------------------------------------

    def item(self, pk: str) -> dict[str, Any] | None:
        """A consistent read of one item by its partition key."""
        item = self._table.get_item(Key={JobsTable.PARTITION_KEY: pk}, ConsistentRead=True).get(
            "Item"
        )
        return dict(item) if item is not None else None

    def tenant_page(
        self,
        partition: str,
        *,
        limit: int,
        start_key: dict[str, str] | None,
        filter_kwargs: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of the tenant index's `partition` (a tenant's items of one kind), newest
        first, and the key to continue from."""
        kwargs: dict[str, Any] = {
            "IndexName": JobsTable.TENANT_INDEX,
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": JobsTable.TENANT_INDEX_PARTITION_KEY},
            "ExpressionAttributeValues": {":p": partition},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        if filter_kwargs:
            kwargs["FilterExpression"] = filter_kwargs["FilterExpression"]
            kwargs["ExpressionAttributeNames"].update(filter_kwargs["ExpressionAttributeNames"])
            kwargs["ExpressionAttributeValues"].update(filter_kwargs["ExpressionAttributeValues"])
        page = self._table.query(**kwargs)
        return list(page.get("Items", [])), page.get("LastEvaluatedKey")

    # --- jobs ----------------------------------------------------------------------------------

    def job_item(self, job_id: str) -> dict[str, Any] | None:
        return self.item(job_pk(job_id))

    def create_job(self, item: dict[str, Any], first: JobEvent) -> None:
        """Write a new job record, its event log started by `first`. Raises ClientError
        (`is_conditional_failure`) when one with its id exists: the write lost a race."""
        self._table.put_item(
            Item={**item, EVENTS_ATTRIBUTE: [event_item(first)]},
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": JobsTable.PARTITION_KEY},
        )

    def confirm_sent(self, job_id: str) -> bool:
        """Clear `unsent_lane` once the message is out; False when already cleared."""
        try:
            self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
                UpdateExpression="REMOVE #unsent",
                ConditionExpression="attribute_exists(#unsent)",
                ExpressionAttributeNames={"#unsent": _UNSENT},
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def clear_unsent(self, job_id: str) -> None:
        """Drop the flag of a job that no longer needs its message (it left QUEUED)."""
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
            UpdateExpression="REMOVE #unsent",
            ExpressionAttributeNames={"#unsent": _UNSENT},
        )

    def cancel(self, job_id: str, *, now: str, error: JobError, event: JobEvent) -> bool:
        """CANCELLED unless already final; False when it became final first (a worker rendering
        it stops at its next write or beat: its writes are fenced on the status)."""
        error_value = error.model_dump(mode="json", exclude_none=True)
        return self._finish(job_id, JobStatus.CANCELLED, now, error_value, event) is not None

    def fail(self, job_id: str, *, now: str, error: JobError, event: JobEvent) -> dict | None:
        """FAILED (lease and queue flags dropped) unless already final: the new item, or None
        when it was final (or absent) first."""
        return self._finish(
            job_id,
            JobStatus.FAILED,
            now,
            error.model_dump(mode="json"),
            event,
            also_remove="lease_owner, lease_expires_at, ",
        )

    def _finish(
        self,
        job_id: str,
        status: JobStatus,
        now: str,
        error_value: dict[str, Any],
        event: JobEvent,
        *,
        also_remove: str = "",
    ) -> dict[str, Any] | None:
        """`status` with its error and event, queue flags dropped, unless the job is already
        final (or absent): the new item, or None."""
        clause, event_values = append_clause(event)
        try:
            response = self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
                UpdateExpression=(
                    f"SET #status = :status, #error = :error, updated_at = :now, {clause}"
                    f" REMOVE {also_remove}#unsent, queued_lane"
                ),
                ConditionExpression="attribute_exists(#pk) AND NOT #status IN (:s, :f, :c, :e)",
                ExpressionAttributeNames={
                    "#pk": JobsTable.PARTITION_KEY,
                    "#status": "status",
                    "#error": "error",
                    "#unsent": _UNSENT,
                },
                ExpressionAttributeValues={
                    ":status": status.value,
                    ":error": error_value,
                    ":now": now,
                    **_final_statuses(),
                    **event_values,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as failure:
            if is_conditional_failure(failure):
                return None
            raise
        return dict(response["Attributes"])

    def set_flag(self, job_id: str, attribute: str) -> None:
        """Set a boolean marker attribute (e.g. that an event is out)."""
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
            UpdateExpression="SET #published = :yes",
            ExpressionAttributeNames={"#published": attribute},
            ExpressionAttributeValues={":yes": True},
        )

    def mark_purged(self, job_id: str, now: str) -> None:
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
            # No segments left: a succeeded job's preview (during its grace) is gone with them.
            UpdateExpression="SET purged_at = :now REMOVE webhook_url, segments_done",
            ExpressionAttributeValues={":now": now},
        )

    def append_event(self, job_id: str, event: JobEvent) -> bool:
        """One event on its own; False when the job is gone or its log is full."""
        return append_event(self._table, job_pk(job_id), event)

    def job_items(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The jobs' items, read in batches (BatchGetItem; retried for unprocessed keys)."""
        ids = list(dict.fromkeys(job_ids))
        client = self._table.meta.client
        table = self._table.name
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), _BATCH_GET_KEYS):
            batch = ids[start : start + _BATCH_GET_KEYS]
            keys = [{JobsTable.PARTITION_KEY: job_pk(job_id)} for job_id in batch]
            request: dict[str, Any] = {table: {"Keys": keys}}
            while request:
                answer = client.batch_get_item(RequestItems=request)
                # The Table resource's client (de)serializes Python values, as the resource does.
                found += answer.get("Responses", {}).get(table, [])
                request = answer.get("UnprocessedKeys") or {}
        return found

    def unsent_before(self, lane: str, cutoff: str) -> Iterator[dict[str, Any]]:
        """The lane's jobs still flagged unsent that were created before `cutoff` (the sparse
        `unsent` index; eventually consistent)."""
        for page in self._lane_index_pages(
            JobsTable.UNSENT_INDEX,
            JobsTable.UNSENT_INDEX_PARTITION_KEY,
            JobsTable.UNSENT_INDEX_SORT_KEY,
            lane=lane,
            created_before=cutoff,
        ):
            yield from page.get("Items", [])

    def queued_before_pages(self, lane: str, created_at: str, **extra: Any) -> Iterator[Any]:
        """Pages of the sparse `queued` index: the lane's QUEUED jobs created before
        `created_at`, oldest first (`extra`: e.g. `Select="COUNT"`)."""
        return self._lane_index_pages(
            JobsTable.QUEUED_INDEX,
            JobsTable.QUEUED_INDEX_PARTITION_KEY,
            JobsTable.QUEUED_INDEX_SORT_KEY,
            lane=lane,
            created_before=created_at,
            **extra,
        )

    def _lane_index_pages(
        self,
        index: str,
        partition_key: str,
        sort_key: str,
        *,
        lane: str,
        created_before: str,
        **extra: Any,
    ) -> Iterator[Any]:
        """Every page of a sparse per-lane index (lane, created_at) up to `created_before`,
        oldest first; read lazily, so a caller that stops early queries no further page."""
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": "#lane = :lane AND #created < :before",
            "ExpressionAttributeNames": {"#lane": partition_key, "#created": sort_key},
            "ExpressionAttributeValues": {":lane": lane, ":before": created_before},
            **extra,
        }
        while True:
            page = self._table.query(**request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def lane_stats(self, lane: str) -> dict[str, Any] | None:
        """The lane's render samples and live workers (an eventually consistent read)."""
        item = self._table.get_item(Key={JobsTable.PARTITION_KEY: lane_stats_pk(lane)}).get("Item")
        return dict(item) if item else None

    # --- uploads -------------------------------------------------------------------------------

    def create_upload(self, item: dict[str, Any]) -> None:
        """Write a new upload record (its id is random: an existing one is an error)."""
        self._table.put_item(
            Item=item,
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": JobsTable.PARTITION_KEY},
        )

    def upload_item(self, tenant: str, upload_id: str) -> dict[str, Any] | None:
        return self.item(upload_pk(tenant, upload_id))

    def delete_upload(self, tenant: str, upload_id: str) -> None:
        self._table.delete_item(Key={JobsTable.PARTITION_KEY: upload_pk(tenant, upload_id)})

    # --- avatars -------------------------------------------------------------------------------

    def put_avatar(
        self, tenant: str, avatar_id: str, fields: dict[str, Any], now: str
    ) -> dict[str, Any]:
        """Create the avatar or point it at a newer upload (keeping `created_at`): the new item.
        `fields` holds upload_id, kind, source, source_bytes and options."""
        response = self._table.update_item(
            Key={JobsTable.PARTITION_KEY: avatar_pk(tenant, avatar_id)},
            UpdateExpression=(
                "SET avatar_id = :id, tenant = :tenant, #tk = :tk, upload_id = :upload,"
                " kind = :kind, #src = :src, source_bytes = :bytes, #opts = :opts,"
                " created_at = if_not_exists(created_at, :now), updated_at = :now"
            ),
            ExpressionAttributeNames={
                "#tk": JobsTable.TENANT_INDEX_PARTITION_KEY,
                "#src": "source",
                "#opts": "options",
            },
            ExpressionAttributeValues={
                ":id": avatar_id,
                ":tenant": tenant,
                ":tk": tenant_kind(tenant, "avatar"),
                ":upload": fields["upload_id"],
                ":kind": fields["kind"],
                ":src": fields["source"],
                ":bytes": fields["source_bytes"],
                ":opts": fields["options"],
                ":now": now,
            },
            ReturnValues="ALL_NEW",
        )
        return dict(response["Attributes"])

    def avatar_item(self, tenant: str, avatar_id: str) -> dict[str, Any] | None:
        return self.item(avatar_pk(tenant, avatar_id))

    def delete_avatar(self, tenant: str, avatar_id: str) -> None:
        self._table.delete_item(Key={JobsTable.PARTITION_KEY: avatar_pk(tenant, avatar_id)})
