"""What a user watching local mode sees: the live preview to its last frame, the ETA's error for
a queue of jobs, and a webhook redelivery reaching a receiver on this machine.

    python -m bench.local_watch [--jobs 5] [--seconds-per-frame 0.02] [--models DIR]

Starts the local stack as `python -m runtime.local up` does (moto server, the API gateway with
its trigger loop, one worker process) and, all through the public API and a webhook receiver on
127.0.0.1:

- warm-up: two jobs of different lengths, so the lane has render samples to estimate from;
- ETA: `--jobs` jobs of different lengths submitted at once; each job's `estimated_start_at` and
  `estimated_done_at` from its 202 are compared with when it really started (its `PREPARING`
  event) and ended (`SUCCEEDED`); prints each error and the median of the absolute errors, next
  to the previous estimate's (position / workers x the lane's mean job time, the running job
  ignored) computed from the same lane samples at the same moment;
- preview: a player (PyAV's HLS demuxer) opens the longest job's `preview_url` while it renders
  and plays to `#EXT-X-ENDLIST`; another opens the last job's `preview_url` after it succeeded;
  both must decode every frame (`frames_total`);
- redelivery: every job posts its webhook to the local receiver; then
  `POST /v1/jobs/{id}/webhook/redeliver` must reach it again (same `webhook-id`), through the
  gateway's deliveries trigger.

The worker uses the small test engine (`tests/support/small_engine.py`: real segment encoding,
uploads and queues; the frames are not MuseTalk's) at `--seconds-per-frame` of simulated GPU
time, so the ETA has a steady rate to learn; `--models DIR` runs the real engine on CPU instead
(much slower). Exit status 1 if a preview misses frames or the redelivery never arrives.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx

from runtime.cli.client import ApiClient
from runtime.common.jobs import AvatarOptions, RenderOptions
from runtime.common.names import JobsTable, Lane
from runtime.common.records import lane_stats_pk
from runtime.local.media import EXAMPLES_DIR, trim_audio
from runtime.local.stack import RunningStack, StackOptions, running_stack

WARM_UP_SECONDS = (2.0, 6.0)
QUEUE_SECONDS = (8.0, 3.0, 12.0, 5.0, 10.0, 4.0, 7.0, 2.0)
JOB_TIMEOUT_SECONDS = 600


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST's job id and `webhook-id`."""

    def __init__(self) -> None:
        self.deliveries: dict[str, list[str]] = defaultdict(list)
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                job_id = json.loads(body).get("job_id", "?")
                received[job_id].append(self.headers.get("webhook-id", ""))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


class Api:
    def __init__(self, stack: RunningStack) -> None:
        self.client = ApiClient(stack.api_url, stack.api_key, timeout_seconds=60)
        self._http = httpx.Client(
            base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=60
        )

    def get(self, path: str) -> dict[str, Any]:
        answer = self._http.get(path)
        answer.raise_for_status()
        return dict(answer.json())

    def post(self, path: str) -> dict[str, Any]:
        answer = self._http.post(path)
        answer.raise_for_status()
        return dict(answer.json())


def submit(api: Api, avatar_id: str, audio: Path, webhook: str) -> dict[str, Any]:
    upload_id = api.client.upload(audio)
    return api.client.create_job(
        avatar_id=avatar_id,
        audio_upload_id=upload_id,
        lane=Lane.INTERACTIVE,
        options=RenderOptions(),
        webhook_url=webhook,
    )


def mean_job_estimate(stack: RunningStack, job: dict[str, Any]) -> float | None:
    """The previous ETA's start offset for `job`, from the lane's samples as they are now."""
    table = stack.session.resource("dynamodb", endpoint_url=stack.resources.endpoint_url).Table(
        stack.resources.names.jobs_table
    )
    item = table.get_item(Key={JobsTable.PARTITION_KEY: lane_stats_pk(Lane.INTERACTIVE.value)})
    samples = list((item.get("Item") or {}).get("samples", {}).values())
    if not samples or job.get("queue_position") is None:
        return None
    mean = sum(float(sample["seconds"]) for sample in samples) / len(samples)
    return float(job["queue_position"]) * mean  # one worker


def wait_final(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}")
        if job["status"] in {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} not final after {JOB_TIMEOUT_SECONDS} s")


def status_times(api: Api, job_id: str) -> dict[str, datetime]:
    """When the job first entered each status, from its event log."""
    times: dict[str, datetime] = {}
    for event in api.get(f"/v1/jobs/{job_id}/events")["events"]:
        if event["kind"] == "status":
            times.setdefault(event["status"], datetime.fromisoformat(event["at"]))
    return times


def play(url: str) -> int:
    """Frames an HLS player decodes from `url`, from the first segment to `#EXT-X-ENDLIST`."""
    with av.open(url, format="hls", options={"live_start_index": "0"}) as hls:
        return sum(1 for _ in hls.decode(video=0))


def watch_live(api: Api, job_id: str, result: dict[str, Any]) -> None:
    """Open the job's preview as soon as it has one, and play it to the end."""
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}")
        if job.get("preview_url"):
            result["opened_while"] = job["status"]
            result["frames"] = play(job["preview_url"])
            return
        if job["status"] in {"FAILED", "CANCELLED", "EXPIRED"}:
            return
        time.sleep(0.2)


def run(stack: RunningStack, media: Path, jobs: int) -> int:
    """Warm-up, the queue of `jobs` with the live preview watched, then the figures; 1 if a
    preview missed frames or the redelivery never arrived."""
    api = Api(stack)
    receiver = Receiver()
    try:
        upload = api.client.upload(EXAMPLES_DIR / "musk.png")
        avatar_id = api.client.create_avatar(upload, AvatarOptions())["avatar_id"]
        clips = {
            s: trim_audio(EXAMPLES_DIR / "eng.wav", media / f"{s:g}s.wav", s)
            for s in {*WARM_UP_SECONDS, *QUEUE_SECONDS[:jobs]}
        }

        for seconds in WARM_UP_SECONDS:  # one at a time: the lane learns its rate
            wait_final(api, submit(api, avatar_id, clips[seconds], receiver.url)["job_id"])

        accepted, previous = [], []
        for seconds in QUEUE_SECONDS[:jobs]:
            accepted.append(submit(api, avatar_id, clips[seconds], receiver.url))
            previous.append((time.time(), mean_job_estimate(stack, accepted[-1])))
        longest = max(range(jobs), key=lambda i: QUEUE_SECONDS[i])
        live: dict[str, Any] = {}
        watcher = threading.Thread(
            target=watch_live, args=(api, accepted[longest]["job_id"], live), daemon=True
        )
        watcher.start()
        finals = [wait_final(api, job["job_id"]) for job in accepted]
        watcher.join(JOB_TIMEOUT_SECONDS)

        print_eta_errors(api, accepted, finals, previous)
        ok = previews_played(api, finals[longest], finals[-1], live)
        ok &= redelivered(api, receiver, accepted[0]["job_id"])
        return 0 if ok else 1
    finally:
        receiver.close()
        api.client.close()


def print_eta_errors(
    api: Api,
    accepted: list[dict[str, Any]],
    finals: list[dict[str, Any]],
    previous: list[tuple[float, float | None]],
) -> None:
    """Each job's start and done estimate against when it really started and ended, and the
    previous estimate's start error (`previous`: when it was taken, its start offset)."""
    print(
        f"\nETA of {len(accepted)} jobs submitted at once (one worker), seconds (estimate - actual)"
    )
    print(
        f"{'job':>3} {'audio s':>7} {'pos':>3} {'start err':>9} {'done err':>8} "
        f"{'done in':>7} {'previous start err':>18}"
    )
    start_errors, done_errors, previous_errors = [], [], []
    for i, (job, final) in enumerate(zip(accepted, finals, strict=True)):
        times = status_times(api, job["job_id"])
        submitted = datetime.fromisoformat(final["created_at"])
        start_err = done_err = float("nan")
        if job.get("estimated_start_at"):
            start = datetime.fromisoformat(job["estimated_start_at"])
            done = datetime.fromisoformat(job["estimated_done_at"])
            start_err = (start - times["PREPARING"]).total_seconds()
            done_err = (done - times[final["status"]]).total_seconds()
            start_errors.append(abs(start_err))
            done_errors.append(abs(done_err))
        took = (times[final["status"]] - submitted).total_seconds()
        at, offset = previous[i]
        old_err = float("nan")
        if offset is not None:
            old_err = at + offset - times["PREPARING"].timestamp()
            previous_errors.append(abs(old_err))
        print(
            f"{i:>3} {QUEUE_SECONDS[i]:>7g} {job.get('queue_position')!s:>3} "
            f"{start_err:>9.1f} {done_err:>8.1f} {took:>7.1f} {old_err:>18.1f}"
        )
    if start_errors:
        print(
            f"median |error|: start {statistics.median(start_errors):.1f} s, "
            f"done {statistics.median(done_errors):.1f} s "
            f"(max {max(start_errors):.1f} / {max(done_errors):.1f} s)"
        )
    if previous_errors and start_errors:
        old = statistics.median(previous_errors)
        new = statistics.median(start_errors)
        print(
            f"previous estimate, median |start error|: {old:.1f} s "
            f"({old / max(new, 0.05):.1f}x this one's)"
        )


def previews_played(
    api: Api, longest: dict[str, Any], last: dict[str, Any], live: dict[str, Any]
) -> bool:
    """Whether the preview watched live (`live`, of the `longest` job) and the `last` job's,
    opened after it succeeded, each played every frame."""
    total = longest["frames_total"]
    print(
        f"\npreview opened while {live.get('opened_while')}: played {live.get('frames')} of "
        f"{total} frames"
    )
    after = api.get(f"/v1/jobs/{last['job_id']}")
    played = play(after["preview_url"]) if after.get("preview_url") else None
    print(
        f"preview opened after SUCCEEDED: played {played} of {last['frames_total']} frames "
        f"(preview_url_expires_at {after.get('preview_url_expires_at')})"
    )
    return live.get("frames") == total and played == last["frames_total"]


def redelivered(api: Api, receiver: Receiver, target: str) -> bool:
    """Whether `POST .../webhook/redeliver` reached the local receiver again within 60 s."""
    before = len(receiver.deliveries[target])
    api.post(f"/v1/jobs/{target}/webhook/redeliver")
    deadline = time.monotonic() + 60
    while len(receiver.deliveries[target]) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    ids = receiver.deliveries[target]
    reached = len(ids) > before
    print(
        f"\nredelivery reached the local receiver: {reached} (deliveries {len(ids)}, "
        f"same webhook-id: {len(set(ids)) == 1})"
    )
    attempts = [e for e in api.get(f"/v1/jobs/{target}/events")["events"] if e["kind"] == "webhook"]
    for event in attempts:
        print(
            f"  webhook attempt {event['attempt']}: HTTP {event['http_status']}, "
            f"delivered {event['delivered']}, detail {event.get('detail')}"
        )
    return reached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5, choices=range(2, len(QUEUE_SECONDS) + 1))
    parser.add_argument("--seconds-per-frame", type=float, default=0.02)
    parser.add_argument("--models", type=Path, help="real MuseTalk weights (CPU: slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="local-watch-") as scratch:
        work = Path(scratch)
        models = args.models
        if models is None:
            os.environ["MUSETALK_ENGINE_FACTORY"] = "tests.support.small_engine:load"
            os.environ["SMALL_ENGINE_SECONDS_PER_FRAME"] = str(args.seconds_per_frame)
            models = work / "models"
            models.mkdir()
            (models / "weights.bin").write_bytes(b"small engine")
        media = work / "media"
        media.mkdir()
        say = lambda text: print(f"==> {text}", file=sys.stderr, flush=True)  # noqa: E731
        with running_stack(StackOptions(work_dir=work / "stack", models_dir=models), say) as stack:
            return run(stack, media, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
