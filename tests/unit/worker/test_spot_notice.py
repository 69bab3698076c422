"""The spot interruption notice starts draining; no IMDS access turns polling off quietly."""

from __future__ import annotations

import threading

from runtime.worker.spot import NOTICE_PATH, TOKEN_PATH, SpotNoticePoller
from tests.support.recorder import recorder
from tests.support.waiting import eventually


def test_a_posted_notice_requests_a_stop_once_using_an_imdsv2_token() -> None:
    # Given IMDS without a notice at first (404), then with one
    noticed = threading.Event()
    with recorder(statuses=[200, 404, 200, 200]) as imds:
        poller = SpotNoticePoller(imds.url, noticed.set, interval_seconds=0.01)

        # When the poller runs
        poller.start()
        assert noticed.wait(10)
        poller.stop()

    # Then it asked for a token before each read and read the notice path with it
    assert [(r.method, r.path) for r in imds.requests] == [
        ("PUT", TOKEN_PATH),
        ("GET", NOTICE_PATH),
        ("PUT", TOKEN_PATH),
        ("GET", NOTICE_PATH),
    ]
    assert "x-aws-ec2-metadata-token" in imds.requests[1].headers


def test_unreachable_metadata_stops_polling_without_a_stop() -> None:
    # Given IMDS refusing every request (as with a hop limit the task cannot cross)
    noticed = threading.Event()
    with recorder(statuses=[403] * 10) as imds:
        poller = SpotNoticePoller(imds.url, noticed.set, interval_seconds=0.01)

        # When the poller runs
        poller.start()
        eventually(lambda: not poller.running, timeout=10, what="the poller to give up")

    # Then it gave up after three tries and requested no stop
    assert len(imds.requests) == 3
    assert not noticed.is_set()
