"""Supervision of a service's background loops (relay, indexer, inbox, matcher, heartbeat).

A loop that raises is logged and started again after a back-off, so one unexpected error
(a database failover, a bug on odd input) cannot silently stop federation while the API
keeps accepting writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


async def supervise(
    name: str, start: Callable[[], Awaitable[None]], failures: dict[str, int]
) -> None:
    """Run `start()` forever; count restarts in `failures[name]` for the status endpoints."""
    delay = 0.5
    while True:
        try:
            await start()
            log.warning("%s returned; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures[name] = failures.get(name, 0) + 1
            log.exception(
                "%s failed (%d times so far); restarting in %.1fs",
                name,
                failures[name],
                delay,
                extra={"task": name, "restarts": failures[name]},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)


async def stop(task: asyncio.Task[None], name: str, timeout: float = 10.0) -> None:
    """Cancel a task and wait a bounded time: shutdown must never hang on a stuck client call."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.error("%s did not stop within %.0fs of cancellation; leaving it behind", name, timeout)
