"""DynamoDB: the jobs table (key schema from runtime.common.names) and the idempotency table."""

from __future__ import annotations

from runtime.common.names import IdempotencyTable, JobsTable
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import one


def _index(table: dict, name: str) -> dict:
    (index,) = [i for i in table["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == name]
    return index


def test_jobs_table_keys_indexes_and_ttl_follow_the_contract(synthesized: Synthesized) -> None:
    # Given the jobs table
    _, table = one(synthesized.raw, "AWS::DynamoDB::Table", "TablesJobs")
    props = table["Properties"]
    # Then it is keyed by pk, named by ResourceNames, with TTL on expires_at
    assert props["TableName"] == f"musetalk-{synthesized.config.stage}-jobs"
    assert props["KeySchema"] == [{"AttributeName": JobsTable.PARTITION_KEY, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": JobsTable.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    # And a tenant's items list by time, and unsent jobs are findable by lane
    by_tenant = _index(table, JobsTable.TENANT_INDEX)
    assert by_tenant["KeySchema"] == [
        {"AttributeName": JobsTable.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": JobsTable.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
    ]
    unsent = _index(table, JobsTable.UNSENT_INDEX)
    assert unsent["KeySchema"] == [
        {"AttributeName": JobsTable.UNSENT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": JobsTable.UNSENT_INDEX_SORT_KEY, "KeyType": "RANGE"},
    ]
    # And queued jobs count by lane and submission time (queue position), keys only
    queued = _index(table, JobsTable.QUEUED_INDEX)
    assert queued["KeySchema"] == [
        {"AttributeName": JobsTable.QUEUED_INDEX_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": JobsTable.QUEUED_INDEX_SORT_KEY, "KeyType": "RANGE"},
    ]
    assert queued["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    # Kept on delete/update; deleted when the create that made it rolls back, so a failed
    # first deploy leaves no fixed name behind to block the next one.
    assert table["DeletionPolicy"] == "RetainExceptOnCreate"


def test_tables_are_encrypted_with_point_in_time_recovery(synthesized: Synthesized) -> None:
    # Given both tables / Then both have PITR and server-side encryption
    for prefix in ("TablesJobs", "TablesIdempotency"):
        _, table = one(synthesized.raw, "AWS::DynamoDB::Table", prefix)
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True


def test_idempotency_table_is_what_powertools_expects(synthesized: Synthesized) -> None:
    # Given the idempotency table / Then it has powertools' default key and TTL attribute
    _, table = one(synthesized.raw, "AWS::DynamoDB::Table", "TablesIdempotency")
    props = table["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": IdempotencyTable.PARTITION_KEY, "KeyType": "HASH"}
    ]
    assert props["TimeToLiveSpecification"]["AttributeName"] == IdempotencyTable.TTL_ATTRIBUTE
