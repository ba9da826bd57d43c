"""Polling for tests against a live cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60.0, what: str = "") -> T:
    """Poll until `ok(fetch())`; on timeout fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what or 'condition'} not met within {timeout}s; last value: {value!r}"[:3000])
        time.sleep(0.3)
