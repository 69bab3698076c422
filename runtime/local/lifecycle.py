"""S3 lifecycle expiration for local mode: the emulator stores a bucket's lifecycle rules but
never runs them, so the local triggers thread applies them, as S3 would, to what they match.

Only what local mode configures is understood: enabled rules with `Expiration.Days` and a
filter on a prefix, one tag, or both (`And`). An object expires on the date S3 gives it
(`expiry_date`): its write time plus `Days`, rounded up to midnight UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class ExpiryRule:
    rule_id: str
    days: int
    prefix: str
    tags: frozenset[tuple[str, str]]

    def matches(self, key: str, tags: frozenset[tuple[str, str]]) -> bool:
        return key.startswith(self.prefix) and self.tags <= tags


def expiry_date(written: datetime, days: int) -> datetime:
    """When S3 expires an object written at `written` under an `Expiration.Days` rule: the write
    time plus `days`, rounded up to the next midnight UTC (a time already on midnight stays), as
    the S3 User Guide's lifecycle elements page describes; S3 acts on it that day."""
    due = (written + timedelta(days=days)).astimezone(UTC)
    midnight = due.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == due else midnight + timedelta(days=1)


def expiry_rules(s3: Any, bucket: str) -> list[ExpiryRule]:
    """The bucket's enabled expiration rules (none if it has no lifecycle configuration)."""
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    found = []
    for rule in rules:
        days = (rule.get("Expiration") or {}).get("Days")
        if rule.get("Status") != "Enabled" or not days:
            continue
        spec = rule.get("Filter") or {}
        spec = spec.get("And", spec)
        tags = list(spec.get("Tags", [])) + ([spec["Tag"]] if "Tag" in spec else [])
        found.append(
            ExpiryRule(
                rule_id=str(rule.get("ID", "")),
                days=int(days),
                prefix=str(spec.get("Prefix", rule.get("Prefix", ""))),
                tags=frozenset((str(t["Key"]), str(t["Value"])) for t in tags),
            )
        )
    return found


def apply_expiry(s3: Any, bucket: str, now: datetime) -> list[str]:
    """Delete the objects of `bucket` some rule has expired at `now`; their keys."""
    rules = expiry_rules(s3, bucket)
    if not rules:
        return []
    expired = []
    for item in _objects(s3, bucket):
        written = item["LastModified"]
        due = [rule for rule in rules if now >= expiry_date(written, rule.days)]
        if not due:
            continue
        tags: frozenset[tuple[str, str]] = frozenset()
        if any(rule.tags for rule in due):
            tag_set = s3.get_object_tagging(Bucket=bucket, Key=item["Key"])["TagSet"]
            tags = frozenset((str(t["Key"]), str(t["Value"])) for t in tag_set)
        if any(rule.matches(item["Key"], tags) for rule in due):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
            expired.append(str(item["Key"]))
    return expired


def _objects(s3: Any, bucket: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        yield from page.get("Contents", [])
