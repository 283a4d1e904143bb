"""Blocking work from the request path, with a deadline.

A store that stops answering (a stalled PostgreSQL keeps its connections open and sends
nothing) would otherwise hold a request for as long as the stall lasts. Each route runs its
store calls through one of these: past the deadline the request gets 503 with
``Retry-After`` (``StoreUnavailable``), and the thread left waiting is abandoned to finish
or fail on its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import anyio
import anyio.to_thread

from recloop.errors import StoreUnavailable

T = TypeVar("T")


def _late(timeout_s: float) -> StoreUnavailable:
    return StoreUnavailable(f"not answered within {timeout_s:g} s (the store is slow or away)")


async def store_call(timeout_s: float, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, or StoreUnavailable after ``timeout_s``."""
    try:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args), abandon_on_cancel=True
            )
    except TimeoutError as exc:
        raise _late(timeout_s) from exc


async def executor_call(
    timeout_s: float, executor: Executor, fn: Callable[..., T], *args: object
) -> T:
    """``fn(*args)`` on ``executor``, or StoreUnavailable after ``timeout_s``."""
    future = asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))
    try:
        return await asyncio.wait_for(future, timeout_s)
    except TimeoutError as exc:
        raise _late(timeout_s) from exc
