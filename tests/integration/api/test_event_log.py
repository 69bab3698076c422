"""GET /v1/jobs/{id}/events: the API's own status changes appear, oldest first, per tenant."""

from __future__ import annotations

from tests.integration.api.conftest import Call, Submit


def test_submit_and_cancel_are_in_the_log_and_other_tenants_get_a_404(
    call_api: Call, submit_job: Submit
) -> None:
    # Given a submitted, then cancelled job
    job_id = submit_job("events-1")["json"]["job_id"]
    assert call_api("DELETE", f"/v1/jobs/{job_id}")["statusCode"] == 200

    # When its owner reads the event log
    response = call_api("GET", f"/v1/jobs/{job_id}/events")

    # Then it lists QUEUED then CANCELLED with the reason
    assert response["statusCode"] == 200, response["json"]
    events = response["json"]["events"]
    assert [(e["kind"], e["status"]) for e in events] == [
        ("status", "QUEUED"),
        ("status", "CANCELLED"),
    ]
    assert events[1]["detail"] == "cancelled by caller"
    assert events[0]["at"] <= events[1]["at"]
    assert response["json"]["truncated"] is False
    # And another tenant cannot tell the job exists
    other = call_api("GET", f"/v1/jobs/{job_id}/events", api_key_id="key-b")
    assert other["statusCode"] == 404
    assert call_api("GET", "/v1/jobs/job_nope/events")["statusCode"] == 404
