"""One job at a time per event loop, joined by all who need it: :class:`SingleFlight`.

A token refresh and a certificate fetch have the same shape: many callers
need the result of one slow network call at about the same moment, and must
not each make it. The first caller starts a *flight*; the others join it. A
caller that leaves (cancelled, out of time) does not cancel it: others may
need it. A failure reaches everyone waiting and is forgotten, so the next
caller starts afresh.

A flight is **hedged**: an attempt that has run for ``hedge_after`` seconds
while somebody waits is probably lost (a dropped packet, a stalled backend),
so another attempt starts beside it, over the route of the newest waiter,
and so on every ``hedge_after`` seconds while somebody still waits (at most
``max_attempts`` in the air: the oldest makes way). The first attempt to
succeed serves everyone and the others are cancelled; the flight fails only
when every attempt has. That is what lets the next
caller after an endpoint recovers get its answer within about one round
trip, instead of waiting for a dead attempt's timeout.

Hedges draw on one budget for the whole process (:class:`HedgeBudget`, as
gRPC throttles its retries): ten to start with, and a tenth more for every
flight that lands without one. A lost request among healthy ones is hedged at
once; an overloaded endpoint, or attempts queued behind a connection limit,
where every flight is slow, get a hedge for one flight in ten at most instead
of doubling the load on what is already struggling.

One flight per event loop: a loop never waits on another's, and a loop that
closes with a flight in the air leaves nothing behind for the next one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

#: Seconds an attempt may run, while somebody waits for it, before another
#: one starts beside it.
HEDGE_AFTER = 3.0

#: Attempts in the air at once, at most, per flight.
MAX_ATTEMPTS = 3


class HedgeBudget:
    """Hedges the whole process may still make; see the module docstring.

    Args:
        most (float): The budget's ceiling, and where it starts.
        earned (float): What a flight that landed without a hedge adds.
    """

    def __init__(self, most: float = 10.0, earned: float = 0.1) -> None:
        self.most = most
        self.earned = earned
        self.left = most

    def spend(self) -> bool:
        """Take one hedge from the budget, if there is one left."""
        if self.left < 1:
            return False
        self.left -= 1
        return True

    def earn(self) -> None:
        """A flight landed on its first attempt."""
        self.left = min(self.most, self.left + self.earned)


#: The budget every flight of the process draws on.
BUDGET = HedgeBudget()


class Flight(Generic[_T]):
    """One job in the air on one event loop, and its attempts.

    Attributes:
        result (asyncio.Future): Settled by the first attempt to succeed, or
            with the last failure once every attempt has failed.
        notes (List[Any]): What each attempt's starter attached to it, oldest
            first (the refresh keeps the route and where its HTTP call is).
        started (float): When the flight started, in ``loop.time()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hedge_after: float,
        max_attempts: int,
    ) -> None:
        self.result: asyncio.Future[_T] = loop.create_future()
        # Seen even when nobody waits (a background refresh): never
        # "exception was never retrieved".
        self.result.add_done_callback(_retrieve)
        self.notes: list[Any] = []
        self.started = loop.time()
        self._loop = loop
        self._hedge_after = hedge_after
        self._max_attempts = max_attempts
        self._attempts: dict[asyncio.Task[_T], Any] = {}
        self._last_start = self.started
        self._waiters = 0
        self._next: Callable[[], Awaitable[_T]] | None = None
        self._next_note: Any = None
        self._hedge_timer: asyncio.TimerHandle | None = None
        #: The note of the attempt whose failure settled the flight.
        self.failed_note: Any = None

    def attempt(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> None:
        """Start one more attempt of the job."""
        task = self._loop.create_task(_run(job))
        self._attempts[task] = note
        self.notes.append(note)
        self._last_start = self._loop.time()
        task.add_done_callback(self._attempt_done)

    async def wait(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> _T:
        """Wait for the flight's result; ``job`` is what a hedge would run.

        Raises:
            Exception: The flight's failure.
        """
        self._waiters += 1
        self._next, self._next_note = job, note
        self._schedule_hedge()
        try:
            # shield(): a waiter that is cancelled (or out of time) must not
            # cancel what others may need.
            return await asyncio.shield(self.result)
        finally:
            self._waiters -= 1

    def _schedule_hedge(self) -> None:
        if self._hedge_timer is None and not self.result.done():
            self._hedge_timer = self._loop.call_at(
                self._last_start + self._hedge_after, self._hedge
            )

    def _hedge(self) -> None:
        self._hedge_timer = None
        if self.result.done() or not self._waiters or self._next is None:
            return  # the next waiter schedules it again
        if not BUDGET.spend():
            # Overloaded, most likely: the attempts in the air are waited for,
            # and the budget looked at again later.
            self._hedge_timer = self._loop.call_later(self._hedge_after, self._hedge)
            return
        if len(self._attempts) >= self._max_attempts:
            # All lost, most likely: the oldest makes way, so that attempts
            # stay few and the newest waiter's still goes out.
            oldest = next(iter(self._attempts))
            del self._attempts[oldest]
            oldest.cancel()
        self.attempt(self._next, self._next_note)
        self._schedule_hedge()

    def _attempt_done(self, task: asyncio.Task[_T]) -> None:
        note = self._attempts.pop(task, None)
        if self.result.done():
            if not task.cancelled():
                task.exception()  # a loser's failure is no news
            return
        if task.cancelled():
            if not self._attempts:
                self.result.cancel()  # the loop is going away
            return
        failure = task.exception()
        if failure is None:
            if len(self.notes) == 1:
                BUDGET.earn()
            self.result.set_result(task.result())
            for other in self._attempts:  # lost, or just slower: not needed
                other.cancel()
        elif not self._attempts:
            self.failed_note = note
            self.result.set_exception(failure)
        if self.result.done() and self._hedge_timer is not None:
            self._hedge_timer.cancel()
            self._hedge_timer = None


async def _run(job: Callable[[], Awaitable[_T]]) -> _T:
    return await job()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class SingleFlight(Generic[_T]):
    """At most one flight of a job per event loop; see the module docstring.

    Args:
        hedge_after (Optional[float]): Seconds an attempt runs, while somebody
            waits, before another starts beside it; :data:`HEDGE_AFTER` as it
            is when a flight starts, if None.
        max_attempts (int): Attempts in the air at once, at most.
    """

    __slots__ = ("__weakref__", "_flights", "_hedge_after", "_max_attempts")

    def __init__(
        self, *, hedge_after: float | None = None, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self._flights: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Flight[_T]
        ] = weakref.WeakKeyDictionary()
        self._hedge_after = hedge_after
        self._max_attempts = max_attempts

    def current(self) -> Flight[_T] | None:
        """The flight in the air on the running loop, if any."""
        flight = self._flights.get(asyncio.get_running_loop())
        return None if flight is None or flight.result.done() else flight

    def start(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> Flight[_T]:
        """Return the flight in the air on the running loop, or start one.

        Args:
            job (Callable[[], Awaitable]): Makes one attempt.
            note (Any): Attached to the attempt, in :attr:`Flight.notes`.
        """
        flight = self.current()
        if flight is not None:
            return flight
        loop = asyncio.get_running_loop()
        hedge_after = HEDGE_AFTER if self._hedge_after is None else self._hedge_after
        flight = self._flights[loop] = Flight(loop, hedge_after, self._max_attempts)
        flight.result.add_done_callback(lambda _: self._landed(loop, flight))
        flight.attempt(job, note)
        return flight

    async def run(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> _T:
        """Join the flight in the air, or start one, and wait for its result."""
        return await self.start(job, note).wait(job, note)

    def _landed(self, loop: asyncio.AbstractEventLoop, flight: Flight[_T]) -> None:
        if self._flights.get(loop) is flight:
            del self._flights[loop]
