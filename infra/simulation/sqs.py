"""SQS as the simulation needs it (docs/simulation.md, "SQS"): a receive hides a message for the
visibility timeout and counts the delivery; a message received more than `maxReceiveCount` times
moves to the dead-letter queue on its next receive instead of being delivered.

A queue that holds no message and that no action accessed for six hours is asleep: SQS delivers
none of its metrics to CloudWatch. An action (send, receive, delete, GetQueueAttributes...) wakes
it, and its metrics come back only after the wake delay."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

from infra.simulation.metrics import MetricStore, key

_ids = count(1)

# "CloudWatch considers a queue to be active for up to six hours if it contains any messages, or
# if any action accesses it"; "a delay of up to 15 minutes occurs in CloudWatch metrics when a
# queue is activated from an inactive state": the documented maximum is assumed (SQS developer
# guide, "Monitoring Amazon SQS queues using CloudWatch").
SLEEPS_AFTER_SECONDS = 6 * 3600
WAKE_DELAY_SECONDS = 15 * 60


@dataclass
class Message:
    job: str
    sent_at: int
    visible_at: int
    receive_count: int = 0
    id: int = field(default_factory=lambda: next(_ids))


@dataclass
class Queue:
    id: str
    visibility_timeout: int
    dead_letter: Queue | None = None
    max_receive_count: int = 0
    messages: list[Message] = field(default_factory=list)
    received_since_publish: int = 0
    last_active: int = 0  # the last action on the queue (holding a message keeps it active too)
    metrics_from: int = 0  # no datapoint before this (the wake delay after a sleep)

    def asleep(self, now: int) -> bool:
        return not self.messages and now - self.last_active > SLEEPS_AFTER_SECONDS

    def access(self, now: int) -> None:
        """Any action on the queue (GetQueueAttributes included): wakes a sleeping queue."""
        if self.asleep(now):
            self.metrics_from = now + WAKE_DELAY_SECONDS
        self.last_active = now

    def send(self, job: str, now: int, delay: int = 0) -> Message:
        self.access(now)
        message = Message(job=job, sent_at=now, visible_at=now + delay)
        self.messages.append(message)
        return message

    def receive(self, now: int) -> tuple[Message | None, list[Message]]:
        """The oldest visible message (now hidden), and any moved to the DLQ on the way."""
        self.access(now)
        moved = []
        for message in sorted(self.messages, key=lambda m: (m.sent_at, m.id)):
            if message.visible_at > now:
                continue
            if self.dead_letter is not None and message.receive_count >= self.max_receive_count:
                self.messages.remove(message)
                self.dead_letter.access(now)  # the queue now holds a message: active
                self.dead_letter.messages.append(
                    Message(job=message.job, sent_at=now, visible_at=now)
                )
                moved.append(message)
                continue
            message.receive_count += 1
            message.visible_at = now + self.visibility_timeout
            self.received_since_publish += 1
            return message, moved
        return None, moved

    def change_visibility(self, message: Message, now: int, seconds: int) -> None:
        self.access(now)
        message.visible_at = now + seconds

    def delete(self, message: Message, now: int) -> None:
        self.access(now)
        if message in self.messages:
            self.messages.remove(message)

    def visible(self, now: int) -> int:
        return sum(1 for m in self.messages if m.visible_at <= now)

    def publish(self, store: MetricStore, now: int) -> None:
        """The gauges SQS reports for an active queue, sampled now, and the receives since; an
        asleep queue, or one still within its wake delay, reports nothing."""
        if self.asleep(now) or now < self.metrics_from:
            self.received_since_publish = 0
            return
        dims = {"QueueName": self.id}
        visible = [m for m in self.messages if m.visible_at <= now]
        store.put(key("AWS/SQS", "ApproximateNumberOfMessagesVisible", **dims), now, len(visible))
        store.put(
            key("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", **dims),
            now,
            len(self.messages) - len(visible),
        )
        oldest = max((now - m.sent_at for m in self.messages), default=0)
        store.put(key("AWS/SQS", "ApproximateAgeOfOldestMessage", **dims), now, oldest)
        store.put(
            key("AWS/SQS", "NumberOfMessagesReceived", **dims), now, self.received_since_publish
        )
        self.received_since_publish = 0
