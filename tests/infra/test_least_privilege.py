"""Each Lambda and each worker lane gets only what it uses; the negative cases are asserted too
(the API cannot read the avatar cache or weights, the worker cannot delete job records...)."""

from __future__ import annotations

import json

import pytest

from runtime.common.jobs import MODEL_VERSION
from runtime.common.keys import (
    AOT_ARTIFACTS_KEY_PATTERN,
    AVATAR_CACHE_PREFIX,
    OUTPUT_KEY_PATTERN,
    PREVIEW_PLAYLIST_KEY_PATTERN,
    SEGMENT_KEY_PATTERN,
    UPLOAD_KEY_PATTERN,
    aot_artifacts_prefix,
    avatar_cache_key,
    output_key,
    preview_playlist_key,
    rendered_cache_key,
    segment_key,
    upload_key,
)
from runtime.common.names import Lane
from tests.infra.conftest import Synthesized
from tests.infra.iam_evaluation import (
    arn_matches,
    conditions_hold,
    may,
    may_list,
    may_on_queue,
)
from tests.infra.template_queries import (
    actions,
    actions_on,
    all_actions,
    logical_id,
    mentions,
    resources,
    statements_of_role,
)


def _id(s: Synthesized, resource_type: str, prefix: str) -> str:
    return logical_id(s.raw, resource_type, prefix)


def _bucket(s: Synthesized, name: str) -> str:
    return _id(s, "AWS::S3::Bucket", f"Storage{name}")


def _queue(s: Synthesized, lane: Lane, dlq: bool = False) -> str:
    title = lane.value.title()
    ids = [
        k
        for k in resources(s.raw, "AWS::SQS::Queue")
        if k.startswith(f"Queues{title}") and ("DeadLetters" in k) == dlq
    ]
    (queue_id,) = ids
    return queue_id


def _role(s: Synthesized, prefix: str) -> str:
    return _id(s, "AWS::IAM::Role", prefix)


def _keys_granted(s: Synthesized, role: str, bucket: str, action: str) -> list[str]:
    """The key patterns (after `<bucket arn>/`) on which `role` may take `action` in `bucket`."""
    patterns = []
    for statement in statements_of_role(s.raw, role):
        if statement["Effect"] != "Allow" or action not in actions(statement):
            continue
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        ):
            if mentions(resource, _bucket(s, bucket)):
                joined = resource["Fn::Join"][1]
                patterns.append(str(joined[-1]).removeprefix("/"))
    return patterns


# --- API handler -----------------------------------------------------------------------------


def test_api_presigns_into_uploads_and_out_of_outputs(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    assert {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"} == actions_on(
        dev.raw, role, _bucket(dev, "Uploads")
    )
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert _keys_granted(dev, role, "Uploads", action) == [UPLOAD_KEY_PATTERN]
    assert {
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:PutObjectTagging",
    } == actions_on(dev.raw, role, _bucket(dev, "Outputs"))
    # It reads (presigns) a job's output and segments only, never the shared render cache
    assert set(_keys_granted(dev, role, "Outputs", "s3:GetObject")) == {
        OUTPUT_KEY_PATTERN,
        SEGMENT_KEY_PATTERN,
    }
    # It writes (tagged) only the live preview's playlists there
    for action in ("s3:PutObject", "s3:PutObjectTagging"):
        assert _keys_granted(dev, role, "Outputs", action) == [PREVIEW_PLAYLIST_KEY_PATTERN]


def test_api_cannot_read_the_avatar_cache_or_touch_weights(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    for bucket in ("Weights", "AccessLogs"):
        assert actions_on(dev.raw, role, _bucket(dev, bucket)) == set(), bucket
    # Purge erases a prepared avatar by key; it never reads the cache
    cache = _bucket(dev, "AvatarCache")
    assert actions_on(dev.raw, role, cache) == {"s3:DeleteObject", "s3:ListBucket"}
    # and lists only its model-version folders (to erase every version's copy), never the
    # avatars in them
    assert may_list(dev.raw, role, cache, prefix=AVATAR_CACHE_PREFIX, delimiter="/")
    version_folder = avatar_cache_key(MODEL_VERSION, "avatar-1").rsplit("/", 1)[0] + "/"
    for prefix, delimiter in [
        (version_folder, "/"),
        (AVATAR_CACHE_PREFIX, ""),
        ("", "/"),
        ("", ""),
    ]:
        assert not may_list(dev.raw, role, cache, prefix=prefix, delimiter=delimiter), prefix


def _api_deletes() -> dict[str, list[str]]:
    """Every kind of key purge and cancel delete, per bucket, built by the runtime's own key
    functions (`runtime.api.cancellation`)."""
    return {
        "Uploads": [upload_key("acme", "up1", "audio"), upload_key("acme", "up2", "avatar")],
        "Outputs": [
            output_key("acme", "job1"),
            segment_key("acme", "job1", 0),
            segment_key("acme", "job1", 99_999),
            preview_playlist_key("acme", "job1"),
            rendered_cache_key(MODEL_VERSION, "c" * 64),
        ],
        "AvatarCache": [avatar_cache_key(MODEL_VERSION, "avatar-1")],
    }


def test_api_may_delete_every_key_purge_and_cancel_build(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    for bucket, keys in _api_deletes().items():
        for key in keys:
            assert may(dev.raw, role, "s3:DeleteObject", _bucket(dev, bucket), key), (bucket, key)


def test_api_may_delete_nothing_outside_those_keys(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    job = "tenants/acme/jobs/job1/"
    outside = {
        # another bucket's layout, the bucket's top level, a tenant's other prefixes
        "Uploads": [output_key("acme", "job1"), "stray.bin", "tenants/acme/notes.txt"],
        "Outputs": [
            upload_key("acme", "up1", "audio"),
            "output.mp4",
            f"{job}notes.txt",
            f"{job}output.mp4.bak",
            "renderedx/v1/hash.mp4",
            avatar_cache_key(MODEL_VERSION, "avatar-1"),
        ],
        "AvatarCache": [rendered_cache_key(MODEL_VERSION, "c" * 64), "stray.bin"],
        "Weights": [
            f"{aot_artifacts_prefix(MODEL_VERSION, 'digest1')}package.tar",
            "models/musetalkV15/unet.pth",
        ],
        "AccessLogs": ["outputs/2026-01-01-00-00-00-ABCDEF"],
    }
    for bucket, keys in outside.items():
        for key in keys:
            assert not may(dev.raw, role, "s3:DeleteObject", _bucket(dev, bucket), key), (
                bucket,
                key,
            )
    # and it presigns no download of the shared render cache
    rendered = rendered_cache_key(MODEL_VERSION, "c" * 64)
    assert not may(dev.raw, role, "s3:GetObject", _bucket(dev, "Outputs"), rendered)
    assert may(dev.raw, role, "s3:GetObject", _bucket(dev, "Outputs"), output_key("acme", "j"))


def test_the_wildcard_matcher_follows_iam() -> None:
    bucket = "arn:aws:s3:::amzn-s3-demo-bucket"
    # `*` spans slashes and may be empty; `?` is exactly one character
    assert arn_matches(f"{bucket}/*", f"{bucket}/a/b/c.txt")
    assert arn_matches(f"{bucket}/tenants/*/jobs/*", f"{bucket}/tenants/a/b/jobs/")
    assert arn_matches(f"{bucket}/?.txt", f"{bucket}/a.txt")
    assert not arn_matches(f"{bucket}/?.txt", f"{bucket}/ab.txt")
    # case sensitive, brackets literal, another bucket is another segment's text
    assert not arn_matches(f"{bucket}/Tenants/*", f"{bucket}/tenants/a")
    assert not arn_matches(f"{bucket}/[ab]", f"{bucket}/a")
    assert arn_matches(f"{bucket}/[ab]", f"{bucket}/[ab]")
    assert not arn_matches(f"{bucket}/*", "arn:aws:s3:::amzn-s3-demo-bucket2/a")
    assert not arn_matches("arn:aws:s3:::*/x", "arn:aws:sqs:::b/x")


def test_conditions_hold_only_for_a_request_carrying_the_listed_values() -> None:
    listing = {"StringEquals": {"s3:prefix": "prepared/", "s3:delimiter": "/"}}
    assert conditions_hold(listing, {"s3:prefix": "prepared/", "s3:delimiter": "/"})
    # a key the request lacks fails the condition, as does another value
    assert not conditions_hold(listing, {"s3:prefix": "prepared/"})
    assert not conditions_hold(listing, {"s3:prefix": "prepared/v1/", "s3:delimiter": "/"})
    like = {"StringLike": {"s3:prefix": ["prepared/*", "rendered/?"]}}
    assert conditions_hold(like, {"s3:prefix": "prepared/v1/a"})
    assert conditions_hold(like, {"s3:prefix": "rendered/x"})
    assert not conditions_hold(like, {"s3:prefix": "rendered/xy"})
    with pytest.raises(AssertionError, match="not evaluated"):
        conditions_hold({"ArnLike": {"aws:SourceArn": "*"}}, {})


def test_api_publishes_cancellations_to_the_completion_topic(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    topic = _id(dev, "AWS::SNS::Topic", "NotificationsJobCompletion")
    assert actions_on(dev.raw, role, topic) == {"sns:Publish"}


def test_api_sends_to_both_lanes_but_never_consumes(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    for lane in Lane:
        granted = actions_on(dev.raw, role, _queue(dev, lane))
        assert "sqs:SendMessage" in granted
        assert not {"sqs:ReceiveMessage", "sqs:DeleteMessage"} & granted
    assert "secretsmanager:GetSecretValue" not in all_actions(dev.raw, role)


def test_api_reads_and_writes_job_and_idempotency_records(dev: Synthesized) -> None:
    role = _role(dev, "ApiHandlerServiceRole")
    for table in ("TablesJobs", "TablesIdempotency"):
        granted = actions_on(dev.raw, role, _id(dev, "AWS::DynamoDB::Table", table))
        assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"} <= granted


# --- sweeper and dead-letter handler ---------------------------------------------------------


def test_sweeper_only_queries_updates_and_resends(dev: Synthesized) -> None:
    role = _role(dev, "ApiSweeperServiceRole")
    granted = all_actions(dev.raw, role)
    jobs = actions_on(dev.raw, role, _id(dev, "AWS::DynamoDB::Table", "TablesJobs"))
    assert {"dynamodb:Query", "dynamodb:UpdateItem"} <= jobs
    assert not {"dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:PutItem"} & granted
    assert not any(action.startswith("s3:") for action in granted)
    for lane in Lane:
        assert "sqs:SendMessage" in actions_on(dev.raw, role, _queue(dev, lane))


def test_sweeper_may_touch_the_unpolled_queues_and_no_other_queue(dev: Synthesized) -> None:
    # Each sweep calls GetQueueAttributes on both lane queues and the undeliverable webhooks'
    # queue so SQS keeps their CloudWatch metrics (runtime/api/queue_wake.py); the lane DLQs stay
    # awake through the dead-letter handler's event source mapping (test_job_api), and the
    # webhook deliveries queue through the webhook Lambda's
    role = _role(dev, "ApiSweeperServiceRole")
    undeliverable = _id(dev, "AWS::SQS::Queue", "WebhooksUndeliverable")
    (sweeper,) = [
        f
        for k, f in resources(dev.raw, "AWS::Lambda::Function").items()
        if k.startswith("ApiSweeper")
    ]
    environment = sweeper["Properties"]["Environment"]["Variables"]
    assert environment["MUSETALK_WEBHOOK_DEAD_LETTER_QUEUE_URL"] == {"Ref": undeliverable}
    unpolled = {_queue(dev, lane) for lane in Lane} | {undeliverable}
    for queue in resources(dev.raw, "AWS::SQS::Queue"):
        touch = may_on_queue(dev.raw, role, "sqs:GetQueueAttributes", queue)
        assert touch == (queue in unpolled), queue
        consume = may_on_queue(dev.raw, role, "sqs:ReceiveMessage", queue)
        assert not consume, queue
        assert not may_on_queue(dev.raw, role, "sqs:SetQueueAttributes", queue), queue


def test_dead_letter_handler_consumes_dlqs_and_publishes_failures(dev: Synthesized) -> None:
    role = _role(dev, "ApiDeadLettersServiceRole")
    granted = all_actions(dev.raw, role)
    for lane in Lane:
        assert "sqs:ReceiveMessage" in actions_on(dev.raw, role, _queue(dev, lane, dlq=True))
        assert actions_on(dev.raw, role, _queue(dev, lane)) == set()
    topic = _id(dev, "AWS::SNS::Topic", "NotificationsJobCompletion")
    assert "sns:Publish" in actions_on(dev.raw, role, topic)
    assert "sqs:SendMessage" not in granted
    assert not {"dynamodb:DeleteItem", "dynamodb:Scan"} & granted


def test_dead_letter_handler_may_delete_only_render_segments(dev: Synthesized) -> None:
    role = _role(dev, "ApiDeadLettersServiceRole")
    s3_actions = {action for action in all_actions(dev.raw, role) if action.startswith("s3:")}
    # Deletes a failed job's segments by key: no read, no list, no write, no other bucket
    assert s3_actions == {"s3:DeleteObject"}
    assert actions_on(dev.raw, role, _bucket(dev, "Outputs")) == {"s3:DeleteObject"}
    for bucket in ("Uploads", "AvatarCache", "Weights", "AccessLogs"):
        assert actions_on(dev.raw, role, _bucket(dev, bucket)) == set()
    (pattern,) = _keys_granted(dev, role, "Outputs", "s3:DeleteObject")
    assert pattern == SEGMENT_KEY_PATTERN
    # As IAM matches a resource ARN (`*` spans any characters, slashes included): the job's
    # segments and playlist are covered, its output and the tenant's uploads are not.
    outputs = _bucket(dev, "Outputs")
    covered = [segment_key("acme", "job1", 7), preview_playlist_key("acme", "job1")]
    assert all(may(dev.raw, role, "s3:DeleteObject", outputs, key) for key in covered)
    kept = [
        output_key("acme", "job1"),
        upload_key("acme", "up1", "audio"),
        avatar_cache_key("v1", "avatar1"),
        rendered_cache_key("v1", "hash1"),
    ]
    assert not any(may(dev.raw, role, "s3:DeleteObject", outputs, key) for key in kept)


# --- worker ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_consumes_only_its_own_lane(dev: Synthesized, lane: Lane) -> None:
    role = _role(dev, f"{lane.value.title()}WorkerTaskTaskRole")
    own = actions_on(dev.raw, role, _queue(dev, lane))
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= own
    # A job waiting for another job's render of its content goes back as a new message.
    assert "sqs:SendMessage" in own
    other = Lane.BATCH if lane is Lane.INTERACTIVE else Lane.INTERACTIVE
    assert actions_on(dev.raw, role, _queue(dev, other)) == set()
    for dlq_lane in Lane:
        assert actions_on(dev.raw, role, _queue(dev, dlq_lane, dlq=True)) == set()


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_reads_and_updates_jobs_but_cannot_delete_or_scan(
    dev: Synthesized, lane: Lane
) -> None:
    role = _role(dev, f"{lane.value.title()}WorkerTaskTaskRole")
    jobs = actions_on(dev.raw, role, _id(dev, "AWS::DynamoDB::Table", "TablesJobs"))
    assert {"dynamodb:GetItem", "dynamodb:UpdateItem"} <= jobs
    granted = all_actions(dev.raw, role)
    assert not {"dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:BatchWriteItem"} & granted
    idempotency = _id(dev, "AWS::DynamoDB::Table", "TablesIdempotency")
    assert actions_on(dev.raw, role, idempotency) == set()


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_bucket_access_is_exactly_what_it_uses(dev: Synthesized, lane: Lane) -> None:
    role = _role(dev, f"{lane.value.title()}WorkerTaskTaskRole")

    def on(bucket: str) -> set[str]:
        return actions_on(dev.raw, role, _bucket(dev, bucket))

    # reads its inputs and the weights, never deletes them; writes compiled packages only
    assert on("Uploads") == {"s3:GetObject", "s3:ListBucket"}
    assert on("Weights") == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    assert _keys_granted(dev, role, "Weights", "s3:PutObject") == [AOT_ARTIFACTS_KEY_PATTERN]
    # writes outputs and prepared avatars (and the preview playlist, presigning its segments'
    # GETs with this role); deletes only its render segments
    for bucket in ("Outputs", "AvatarCache"):
        assert {"s3:PutObject", "s3:GetObject"} <= on(bucket)
    assert not any("Delete" in action for action in on("AvatarCache"))
    assert _keys_granted(dev, role, "Outputs", "s3:DeleteObject") == [SEGMENT_KEY_PATTERN]
    # and tags only them (for the previews' lifecycle rule)
    assert _keys_granted(dev, role, "Outputs", "s3:PutObjectTagging") == [SEGMENT_KEY_PATTERN]
    assert on("AccessLogs") == set()


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_publishes_completions_and_reads_the_webhook_secret(
    dev: Synthesized, lane: Lane
) -> None:
    role = _role(dev, f"{lane.value.title()}WorkerTaskTaskRole")
    completion = _id(dev, "AWS::SNS::Topic", "NotificationsJobCompletion")
    alarms = _id(dev, "AWS::SNS::Topic", "NotificationsAlarms")
    secret = _id(dev, "AWS::SecretsManager::Secret", "NotificationsWebhook")
    assert "sns:Publish" in actions_on(dev.raw, role, completion)
    assert actions_on(dev.raw, role, alarms) == set()
    assert "secretsmanager:GetSecretValue" in actions_on(dev.raw, role, secret)
    # Metrics go out as EMF log lines; nothing to grant.
    assert "cloudwatch:PutMetricData" not in all_actions(dev.raw, role)


def test_no_role_is_granted_admin_style_wildcard_actions(synthesized: Synthesized) -> None:
    for role in resources(synthesized.raw, "AWS::IAM::Role"):
        granted = all_actions(synthesized.raw, role)
        assert not {a for a in granted if a == "*" or a.endswith(":*")}, role


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_may_protect_only_tasks_of_its_own_cluster_from_scale_in(
    dev: Synthesized, lane: Lane
) -> None:
    role = _role(dev, f"{lane.value.title()}WorkerTaskTaskRole")
    cluster = _id(dev, "AWS::ECS::Cluster", "GpuCapacityCluster")
    (statement,) = [
        s for s in statements_of_role(dev.raw, role) if "ecs:UpdateTaskProtection" in actions(s)
    ]
    assert set(actions(statement)) == {"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"}
    assert ":task/" in json.dumps(statement["Resource"])
    assert mentions(statement["Resource"], cluster)
