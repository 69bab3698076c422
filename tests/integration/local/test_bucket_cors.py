"""The buckets answer browser pages of the stage's origins only, as S3 evaluates CORS rules: a
preflight from an allowed origin gets `Access-Control-Allow-Origin`, any other origin a 403, and
buckets browsers never call have no rule at all."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from infra.config import stage_config
from runtime.common.names import BucketRole, ResourceNames
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision

DEV = stage_config("dev")
(PAGE,) = DEV.cors_allowed_origins
OTHER_SITE = "https://attacker.example"


@pytest.fixture(scope="module")
def dev(session: Any, endpoint: str) -> LocalResources:
    names = ResourceNames(stage="dev", account=LOCAL_ACCOUNT, region=LOCAL_REGION)
    return provision(session, names=names, config=DEV, endpoint_url=endpoint)


def _preflight(resources: LocalResources, role: BucketRole, origin: str, method: str) -> Any:
    key = "tenants/local/uploads/u1/audio"
    return httpx.options(
        f"{resources.endpoint_url}/{resources.buckets[role]}/{key}",
        headers={"Origin": origin, "Access-Control-Request-Method": method},
    )


@pytest.mark.parametrize(
    ("role", "method"), [(BucketRole.UPLOADS, "POST"), (BucketRole.OUTPUTS, "GET")]
)
def test_a_page_of_the_stage_may_upload_and_read_outputs(
    dev: LocalResources, role: BucketRole, method: str
) -> None:
    # When the playground's origin asks the bucket whether it may send the request
    answer = _preflight(dev, role, PAGE, method)

    # Then S3 allows exactly that origin, with the method among the allowed ones
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert method in answer.headers["access-control-allow-methods"]


@pytest.mark.parametrize("role", [BucketRole.UPLOADS, BucketRole.OUTPUTS])
def test_a_page_of_another_site_is_refused(dev: LocalResources, role: BucketRole) -> None:
    # When a page of another site asks / Then the preflight fails, so the browser sends nothing
    answer = _preflight(dev, role, OTHER_SITE, "POST" if role is BucketRole.UPLOADS else "GET")
    assert answer.status_code == 403


def test_buckets_no_page_calls_have_no_rules(dev: LocalResources, session: Any) -> None:
    s3 = session.client("s3", endpoint_url=dev.endpoint_url)
    for role in (BucketRole.WEIGHTS, BucketRole.AVATAR_CACHE, BucketRole.ACCESS_LOGS):
        with pytest.raises(ClientError, match="NoSuchCORSConfiguration"):
            s3.get_bucket_cors(Bucket=dev.buckets[role])


def test_a_stage_without_origins_opens_no_bucket_to_browsers(session: Any, endpoint: str) -> None:
    # Given prod, which lists no origins
    prod = stage_config("prod")
    assert prod.cors_allowed_origins == ()
    names = ResourceNames(stage="prod", account=LOCAL_ACCOUNT, region=LOCAL_REGION)
    resources = provision(session, names=names, config=prod, endpoint_url=endpoint)

    # Then no bucket has a CORS rule, so S3 answers no page's request with the origin header
    s3 = session.client("s3", endpoint_url=endpoint)
    for role in BucketRole:
        with pytest.raises(ClientError, match="NoSuchCORSConfiguration"):
            s3.get_bucket_cors(Bucket=resources.buckets[role])
