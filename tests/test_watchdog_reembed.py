"""The watchdog's rule for jobs run as one task (reembed), pure: when their task is re-sent."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.jobs.dispatch import BrokerState
from pipeline.jobs.watchdog import LeasedJobHealth, decide_leased

SETTINGS = Settings(watchdog_idle_s=60)
QUIET = BrokerState(queued=0, lost=False)


def _health(held: bool = False, expired: bool = False, idle_s: float = 0.0) -> LeasedJobHealth:
    return LeasedJobHealth("j", held=held, expired=expired, idle_s=idle_s)


def test_a_live_run_is_left_alone_whatever_else() -> None:
    live = _health(held=True, idle_s=10_000)
    assert decide_leased(live, QUIET, SETTINGS) is None
    assert decide_leased(live, BrokerState(queued=None, lost=True), SETTINGS) is None


def test_an_expired_lease_is_re_sent_even_with_messages_queued() -> None:
    # the dead worker's own message sits unacknowledged in the broker for an hour
    reason = decide_leased(_health(held=True, expired=True), BrokerState(3, False), SETTINGS)
    assert reason is not None and "lease" in reason


def test_a_lost_broker_re_sends_a_job_nothing_holds() -> None:
    reason = decide_leased(_health(), BrokerState(queued=0, lost=True), SETTINGS)
    assert reason is not None and "broker" in reason


def test_an_idle_job_is_re_sent_only_when_nothing_is_queued() -> None:
    assert decide_leased(_health(idle_s=59), QUIET, SETTINGS) is None
    reason = decide_leased(_health(idle_s=61), QUIET, SETTINGS)
    assert reason is not None and "no progress" in reason
    # its message may be waiting behind other work, or the broker cannot say
    assert decide_leased(_health(idle_s=600), BrokerState(queued=2, lost=False), SETTINGS) is None
    assert decide_leased(_health(idle_s=600), BrokerState(None, False), SETTINGS) is None
