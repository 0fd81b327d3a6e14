"""The one way tests wait for something that happens on another thread, process or machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(fn: Callable[[], T], timeout: float, what: str = "the condition", *, every: float = 0.05,
               stop_if: Callable[[], str | None] | None = None, details: Callable[[], str] | None = None) -> T:
    """``fn()``'s first truthy value within ``timeout`` seconds; otherwise the test fails, naming ``what``.

    Args:
        stop_if: asked between tries; a text it returns fails the test at once (a process that exited).
        details: added to the message on a timeout (the processes' logs).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        reason = stop_if() if stop_if is not None else None
        if reason:
            pytest.fail(f"{what}: {reason}")
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}" + (f"\n{details()}" if details else ""))
