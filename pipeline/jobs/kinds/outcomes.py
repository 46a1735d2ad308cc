"""Item outcomes every job kind and the chunk run share: a failure with its catalogue error,
a transient failure put back for later, an item given up on after repeated interruptions."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import ErrorCode, FacepipeError, error_dict
from pipeline.jobs.model import Item, ItemOutcome, ItemStatus, Job


def failed(item: Item, exc: BaseException, content_sha256: str | None = None) -> ItemOutcome:
    """A failed outcome carrying the catalogue error (and whether it is worth retrying)."""
    err = error_dict(exc)
    err["retryable"] = isinstance(exc, FacepipeError) and exc.retryable
    return ItemOutcome(item.id, ItemStatus.FAILED, error=err, content_sha256=content_sha256)


def job_groups(job: Job, item: Item) -> tuple[str, ...]:
    """The groups an item works with: its own (manifest) or the job's."""
    if item.groups:
        return item.groups
    groups: Sequence[str] = job.params.get("groups") or []
    return tuple(groups)


def retry_later(outcome: ItemOutcome, item: Item, max_attempts: int) -> ItemOutcome:
    """A transient item error goes back to pending until its attempts run out; the
    ``retryable`` mark never reaches the stored error."""
    if outcome.status != ItemStatus.FAILED or outcome.error is None:
        return outcome
    if not outcome.error.get("retryable"):
        return _strip_retryable(outcome)
    if item.attempts < max_attempts:
        return ItemOutcome(item.id, ItemStatus.PENDING, error=_strip(outcome.error))
    return _strip_retryable(outcome)


def interrupted(item: Item) -> ItemOutcome:
    """The item's runs were interrupted every time (its worker died): give up on it."""
    err = FacepipeError(
        ErrorCode.INTERNAL,
        f"processing {item.uri} was interrupted {item.attempts - 1} times (the worker died); "
        "giving up on this item",
    )
    return ItemOutcome(item.id, ItemStatus.FAILED, error=err.to_dict())


def _strip(error: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in error.items() if k != "retryable"}


def _strip_retryable(outcome: ItemOutcome) -> ItemOutcome:
    if outcome.error is None:
        return outcome
    return ItemOutcome(
        outcome.item_id,
        outcome.status,
        error=_strip(outcome.error),
        content_sha256=outcome.content_sha256,
        n_faces=outcome.n_faces,
        face_ids=outcome.face_ids,
        observed_ids=outcome.observed_ids,
        result=outcome.result,
    )
