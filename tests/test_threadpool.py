"""pipeline.threadpool: a pool that works again in a forked child, and carries the submitter's
context variables (the log ids) to its threads."""

from __future__ import annotations

import contextvars
import os

from pipeline.threadpool import ProcessThreadPool

REQUEST = contextvars.ContextVar("request", default="none")


def test_work_sees_the_submitters_context() -> None:
    pool = ProcessThreadPool(2, "test-context")
    token = REQUEST.set("req-1")
    try:
        assert pool.submit(REQUEST.get).result(timeout=5) == "req-1"
    finally:
        REQUEST.reset(token)
    assert pool.submit(REQUEST.get).result(timeout=5) == "none"


def test_a_forked_child_gets_threads_of_its_own() -> None:
    pool = ProcessThreadPool(1, "test-fork")
    assert pool.submit(os.getpid).result(timeout=5) == os.getpid()  # the parent's threads exist
    child = os.fork()
    if child == 0:  # the parent's threads are gone here: the pool must make new ones
        try:
            ok = pool.submit(os.getpid).result(timeout=5) == os.getpid()
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
