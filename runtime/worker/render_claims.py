"""A shared claim per render content, so equal content is rendered once however many jobs ask
(per tenant by default: the content hash includes the tenant, see `render_cache_hash`).

The output cache makes a repeat of finished content cheap, but two workers that miss the cache
at the same moment would both render. The first worker to claim a content hash renders it; a
worker whose job has the same content hands the job back and finds the cache filled when the job
comes back. The claim is one item in the jobs table (`pk = "RENDER#<content hash>"`, written with
conditional `UpdateItem` only, as every worker write there is):

- It is a lease: it expires unless the holder's heartbeat extends it, so a dead worker's claim
  blocks nobody for longer than one lease. Each extension also records when the holder expects
  to be done (`claim_done_by`, from its measured frame rate), so waiting jobs look again then.
- The holder ends it when it stops: `release` after the cached render is written (or after a
  transient failure, so a waiter may render), `fail` after a media error. A failed claim carries
  the error for `FAILED_VERDICT_SECONDS`: a poison input fails every job of the same content at
  once instead of making each wait and render in turn. Media errors past the input checks depend
  on nothing but the content (the hash covers avatar, audio, options, model and weights, and the
  tenant unless renders are shared across tenants: a verdict never tells a tenant about another
  tenant's content by default).
- The same job may always take its own content's claim back (its previous worker died; the job's
  own lease already says that this worker is the one running it).

Items carry the table's TTL attribute, so DynamoDB removes them a day after their last use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from runtime.common.jobs import ErrorCode, JobError
from runtime.common.names import JobsTable
from runtime.common.records import render_claim_pk
from runtime.worker.job_store import condition_failed, iso, utc_now

FAILED_VERDICT_SECONDS = 3600  # how long a media error answers for its content
ITEM_TTL_SECONDS = 86_400  # DynamoDB deletes the item this long after its last write
TAKE_ATTEMPTS = 3  # take, read, take again: a claim released between the two reads is taken


class ClaimState(StrEnum):
    RENDERING = "rendering"
    RELEASED = "released"
    FAILED = "failed"


@dataclass(frozen=True)
class Claim:
    """This worker renders `content_hash` for `job_id`."""

    content_hash: str
    owner: str
    job_id: str


@dataclass(frozen=True)
class ClaimHeld:
    """Another job's worker renders this content; its claim lasts until `expires_at` unless
    extended (or ended sooner). `done_by`: when the holder expects to finish, once it knows."""

    job_id: str
    expires_at: str
    done_by: str | None = None


@dataclass(frozen=True)
class ClaimFailed:
    """This content failed with a media error moments ago; the same error answers for it."""

    error: JobError


class RenderClaims:
    def __init__(self, table: Any) -> None:
        self._table = table  # boto3 DynamoDB Table resource (the jobs table)

    def take(
        self, content_hash: str, *, owner: str, job_id: str, lease_seconds: float
    ) -> Claim | ClaimHeld | ClaimFailed:
        for _ in range(TAKE_ATTEMPTS):
            if self._try_take(content_hash, owner, job_id, lease_seconds):
                return Claim(content_hash, owner, job_id)
            item = self._table.get_item(
                Key={JobsTable.PARTITION_KEY: render_claim_pk(content_hash)}, ConsistentRead=True
            ).get("Item")
            if item is None or item.get("claim_expires_at", "") < iso(utc_now()):
                continue  # ended between the two calls: take it
            if item.get("claim_state") == ClaimState.FAILED:
                return ClaimFailed(_error_of(item))
            if item.get("claim_state") == ClaimState.RENDERING:
                done_by = item.get("claim_done_by")
                return ClaimHeld(
                    str(item["claim_job_id"]),
                    str(item["claim_expires_at"]),
                    None if done_by is None else str(done_by),
                )
        # Released and taken by others over and over: a rare race; treat it as held briefly.
        return ClaimHeld("", iso(utc_now()))

    def extend(self, claim: Claim, lease_seconds: float, seconds_left: float | None = None) -> bool:
        """Push the expiry out (the holder's heartbeat) and, once the holder can estimate it,
        record when it expects to be done; False if the claim is no longer ours."""
        now = utc_now()
        done_by = None if seconds_left is None else iso(now + timedelta(seconds=seconds_left))
        return self._end_or_extend(
            claim,
            ClaimState.RENDERING,
            iso(now + timedelta(seconds=lease_seconds)),
            done_by=done_by,
        )

    def release(self, claim: Claim) -> None:
        """The holder is done (the cached render exists) or gives up: anyone may claim again."""
        self._end_or_extend(claim, ClaimState.RELEASED, iso(utc_now()))

    def fail(self, claim: Claim, error: JobError) -> None:
        """The content is unusable: jobs that wait for it fail with the same error."""
        expires = iso(utc_now() + timedelta(seconds=FAILED_VERDICT_SECONDS))
        self._end_or_extend(claim, ClaimState.FAILED, expires, error=error)

    def _try_take(self, content_hash: str, owner: str, job_id: str, lease_seconds: float) -> bool:
        now = utc_now()
        try:
            self._table.update_item(
                Key={JobsTable.PARTITION_KEY: render_claim_pk(content_hash)},
                UpdateExpression=(
                    "SET claim_state = :rendering, claim_owner = :owner, claim_job_id = :job,"
                    " claim_expires_at = :expires, #ttl = :ttl REMOVE claim_error, claim_done_by"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#pk) OR claim_expires_at < :now"
                    " OR claim_state = :released OR claim_job_id = :job"
                ),
                ExpressionAttributeNames={
                    "#pk": JobsTable.PARTITION_KEY,
                    "#ttl": JobsTable.TTL_ATTRIBUTE,
                },
                ExpressionAttributeValues={
                    ":rendering": ClaimState.RENDERING.value,
                    ":released": ClaimState.RELEASED.value,
                    ":owner": owner,
                    ":job": job_id,
                    ":expires": iso(now + timedelta(seconds=lease_seconds)),
                    ":now": iso(now),
                    ":ttl": _ttl(),
                },
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def _end_or_extend(
        self,
        claim: Claim,
        state: ClaimState,
        expires_at: str,
        *,
        error: JobError | None = None,
        done_by: str | None = None,
    ) -> bool:
        """One write fenced on holder and job, so a claim taken over is never touched."""
        values: dict[str, Any] = {
            ":state": state.value,
            ":expires": expires_at,
            ":ttl": _ttl(),
            ":owner": claim.owner,
            ":job": claim.job_id,
            ":rendering": ClaimState.RENDERING.value,
        }
        expression = "SET claim_state = :state, claim_expires_at = :expires, #ttl = :ttl"
        if error is not None:
            expression += ", claim_error = :error"
            values[":error"] = {"code": error.code.value, "message": error.message}
        if done_by is not None:
            expression += ", claim_done_by = :done_by"
            values[":done_by"] = done_by
        try:
            self._table.update_item(
                Key={JobsTable.PARTITION_KEY: render_claim_pk(claim.content_hash)},
                UpdateExpression=expression,
                ConditionExpression=(
                    "claim_owner = :owner AND claim_job_id = :job AND claim_state = :rendering"
                ),
                ExpressionAttributeNames={"#ttl": JobsTable.TTL_ATTRIBUTE},
                ExpressionAttributeValues=values,
            )
        except ClientError as error_:
            if condition_failed(error_):
                return False
            raise
        return True


def _ttl() -> Decimal:
    return Decimal(int(utc_now().timestamp()) + ITEM_TTL_SECONDS)


def _error_of(item: dict[str, Any]) -> JobError:
    stored = item.get("claim_error") or {}
    try:
        code = ErrorCode(str(stored.get("code", "")))
    except ValueError:
        code = ErrorCode.INVALID_MEDIA
    return JobError(code=code, message=str(stored.get("message", "the input is unusable")))
