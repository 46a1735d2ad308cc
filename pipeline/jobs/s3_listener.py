"""S3 triggers: an SQS long-poll listener and a Lambda-style handler over the same logic.

Each ``ObjectCreated`` object is routed by the key rules (:mod:`pipeline.s3events`) to an
enroll or reidentify job item. The objects of one message become one job per (action, groups)
with an idempotency key derived from the message, so a message delivered twice (SQS is
at-least-once) maps to the same job. The SQS message is deleted only after the job and its
items are committed and the chunks are accepted by the broker; test events and malformed
messages are logged and deleted, never retried forever and never fatal to the listener.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.aws import sqs_client
from pipeline.config import Settings, get_settings
from pipeline.errors import FacepipeError
from pipeline.jobs.model import ItemSpec, Job, JobKind
from pipeline.jobs.runtime import Runtime, get_runtime
from pipeline.jobs.submit import submit_items
from pipeline.s3events import (
    ParsedMessage,
    Route,
    S3Action,
    S3Object,
    parse_body,
    parse_event,
    parse_rules,
    route_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandledMessage:
    """What one message turned into."""

    jobs: tuple[str, ...] = ()
    ignored: int = 0
    dropped: str | None = None


def submit_objects(
    objects: Iterable[S3Object], origin: str, *, rt: Runtime | None = None
) -> HandledMessage:
    """Route objects to jobs (one per action and groups) and enqueue their chunks."""
    rt = rt or get_runtime()
    rules = parse_rules(rt.settings.s3_key_rules)
    batches: dict[tuple[S3Action, tuple[str, ...]], list[ItemSpec]] = defaultdict(list)
    ignored = 0
    for obj in objects:
        route: Route | None = route_key(obj.key, rules, rt.settings.reidentify_groups)
        if route is None:
            log.info("s3 event: no key rule for %s, ignored", obj.uri)
            ignored += 1
            continue
        batches[(route.action, route.groups)].append(
            ItemSpec(uri=obj.uri, person_id=route.person_id)
        )
    jobs: list[str] = []
    for (action, groups), specs in sorted(batches.items()):
        key = f"s3:{origin}:{action.value}:{'|'.join(groups)}"
        job: Job = submit_items(
            JobKind(action.value),
            specs,
            groups=groups,
            idempotency_key=key,
            params={"trigger": "s3", "source": specs[0].uri},
            rt=rt,
        )
        log.info(
            "s3 event: job %s (%s, %s) with %d items",
            job.id,
            action,
            groups,
            len(specs),
            extra={"job_id": job.id},
        )
        jobs.append(job.id)
    return HandledMessage(tuple(jobs), ignored)


def handle_s3_event(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Lambda-style entry point: the S3 event JSON (``{"Records": [...]}``) in, job ids out.

    The idempotency key comes from the objects themselves (bucket, key and sequencer), so the
    same event delivered twice yields the same jobs.
    """
    try:
        parsed = parse_event(event)
    except FacepipeError as exc:
        log.warning("s3 event dropped: %s", exc)
        return {"jobs": [], "dropped": exc.message}
    if parsed.test_event:
        return {"jobs": [], "dropped": "s3:TestEvent"}
    origin = hashlib.sha256(
        "\n".join(sorted(o.identity for o in parsed.objects)).encode()
    ).hexdigest()[:32]
    handled = submit_objects(parsed.objects, f"event-{origin}")
    return {"jobs": list(handled.jobs), "ignored": handled.ignored}


def handle_message(message: Mapping[str, Any], *, rt: Runtime | None = None) -> HandledMessage:
    """Turn one SQS message into jobs; raises only for transient failures (keep the message)."""
    try:
        parsed: ParsedMessage = parse_body(str(message.get("Body", "")))
    except FacepipeError as exc:
        log.warning("sqs message %s dropped: %s", message.get("MessageId"), exc)
        return HandledMessage(dropped=exc.message)
    if parsed.test_event:
        log.info("sqs message %s: s3:TestEvent, dropped", message.get("MessageId"))
        return HandledMessage(dropped="s3:TestEvent")
    return submit_objects(parsed.objects, f"sqs-{message.get('MessageId')}", rt=rt)


class SqsListener:
    """Long-poll an SQS queue for S3 event notifications until stopped."""

    def __init__(
        self, queue_url: str, *, settings: Settings | None = None, rt: Runtime | None = None
    ) -> None:
        self.queue_url = queue_url
        self.settings = settings or get_settings()
        self.rt = rt
        self.client = sqs_client(self.settings)
        self.stop_event = threading.Event()

    def poll_once(self, wait_s: int | None = None) -> list[HandledMessage]:
        """One ``ReceiveMessage`` call; handles and deletes what it received."""
        resp = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.settings.sqs_wait_time_s if wait_s is None else wait_s,
        )
        out = []
        for message in resp.get("Messages", []):
            try:
                handled = handle_message(message, rt=self.rt)
            except Exception:  # transient (db/broker): keep the message, SQS redelivers it
                log.exception(
                    "sqs message %s not handled; it will be redelivered", message.get("MessageId")
                )
                continue
            self.client.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            out.append(handled)
        return out

    def run(self) -> None:
        """Poll until :meth:`stop` (or SIGINT/SIGTERM in the CLI)."""
        log.info("listening to %s", self.queue_url)
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # a network blip must not end the listener; back off and go on
                log.exception("sqs receive failed; retrying in 5 s")
                self.stop_event.wait(5.0)

    def stop(self) -> None:
        self.stop_event.set()
