"""One job at a time per event loop, joined by all who need it: :class:`SingleFlight`.

A token refresh and a certificate fetch have the same shape: many callers
need the result of one slow network call at about the same moment, and must
not each make it. The first caller starts a *flight*; the others join it. A
caller that leaves (cancelled, out of time) does not cancel it: others may
need it. A failure reaches everyone waiting and is forgotten, so the next
caller starts afresh.

A flight is **hedged**: an attempt that has run for ``hedge_after`` seconds
while somebody waits is probably lost (a dropped packet, a stalled backend),
so another attempt starts beside it, over the route of the newest waiter
still waiting whose route can still be used. For those already waiting, each
further hedge waits twice as long as the one before (3, 6, 12 s..., 24 s at
most); a caller that arrives after the newest attempt started gets one once
that attempt is ``hedge_after`` old, so that the first caller after an
endpoint recovers is served within about that and a round trip. At most
``max_attempts`` are in the air (the oldest makes way). The first attempt to
succeed serves everyone and the others are cancelled; the flight fails only
when every attempt has.

Hedges draw on two budgets (:class:`HedgeBudget`, as gRPC throttles its
retries): their credentials' (or certificates URL's) own, three and one more
every ten seconds, so that a tenant whose endpoint stalls cannot spend what
the others need; and one for the whole process (one for refreshes, one for
certificate fetches), a hundred and one more a second, so that an
overloaded endpoint, where every flight is slow, gets a few hedges, not twice
its load.

One flight per event loop: a loop never waits on another's, and a loop that
closes with a flight in the air leaves nothing behind for the next one.
"""

from __future__ import annotations

import asyncio
import time
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
    """Hedges that may still be made; see the module docstring.

    Args:
        most (float): The budget's ceiling, and where it starts.
        per_second (float): What it regains every second.
        earned (float): What a flight that landed without a hedge adds.
    """

    def __init__(self, most: float, per_second: float, earned: float = 0.0) -> None:
        self.most = most
        self.per_second = per_second
        self.earned = earned
        self.left = most
        self._at = time.monotonic()

    def has_one(self) -> bool:
        """Whether one hedge is left (the budget regained meanwhile counted)."""
        now = time.monotonic()
        self.left = min(self.most, self.left + (now - self._at) * self.per_second)
        self._at = now
        return self.left >= 1

    def spend(self) -> None:
        """Take one hedge (after :meth:`has_one` said there is one)."""
        self.left -= 1

    def earn(self) -> None:
        """A flight landed on its first attempt."""
        self.left = min(self.most, self.left + self.earned)

    def refill(self) -> None:
        """Make the whole budget available again (for tests)."""
        self.left = self.most
        self._at = time.monotonic()


def _own_budget() -> HedgeBudget:
    return HedgeBudget(most=3, per_second=0.1)


#: The process's budget of token refresh hedges.
REFRESH_BUDGET = HedgeBudget(most=100, per_second=1, earned=0.1)

#: The process's budget of ID-token certificate fetch hedges.
CERTS_BUDGET = HedgeBudget(most=100, per_second=1, earned=0.1)


class _Waiter:
    """A caller waiting on a flight: what a hedge started for it would run."""

    __slots__ = ("arrived", "job", "note", "usable")

    def __init__(
        self,
        job: Callable[[], Awaitable[Any]],
        note: Any,
        usable: Callable[[], bool] | None,
        arrived: float,
    ) -> None:
        self.job = job
        self.note = note
        self.usable = usable
        self.arrived = arrived

    def can_go(self) -> bool:
        return self.usable is None or self.usable()


class Flight(Generic[_T]):
    """One job in the air on one event loop, and its attempts.

    Attributes:
        result (asyncio.Future): Settled by the first attempt to succeed, or
            with the last failure once every attempt has failed.
        notes (List[Any]): What each attempt's starter attached to it, oldest
            first.
        started (float): When the flight started, in ``loop.time()``.
        failed_note (Any): The note of the attempt whose failure settled it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hedge_after: float,
        max_attempts: int,
        budgets: tuple[HedgeBudget, HedgeBudget],
    ) -> None:
        self.result: asyncio.Future[_T] = loop.create_future()
        # Seen even when nobody waits (a background refresh): never
        # "exception was never retrieved".
        self.result.add_done_callback(_retrieve)
        self.notes: list[Any] = []
        self.started = loop.time()
        self.failed_note: Any = None
        self._loop = loop
        self._hedge_after = hedge_after
        self._max_attempts = max_attempts
        self._budgets = budgets
        self._attempts: dict[asyncio.Task[_T], Any] = {}
        self._last_attempt_at = self.started
        self._next_hedge_at = self.started + hedge_after
        self._hedges = 0
        self._waiters: list[_Waiter] = []
        self._hedge_timer: asyncio.TimerHandle | None = None
        self._newcomer_timer: asyncio.TimerHandle | None = None

    def attempt(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> None:
        """Start one more attempt of the job."""
        task = self._loop.create_task(_run(job))
        self._attempts[task] = note
        self.notes.append(note)
        self._last_attempt_at = self._loop.time()
        task.add_done_callback(self._attempt_done)

    async def wait(
        self,
        job: Callable[[], Awaitable[_T]],
        note: Any = None,
        usable: Callable[[], bool] | None = None,
    ) -> _T:
        """Wait for the flight's result.

        Args:
            job (Callable[[], Awaitable]): What a hedge started for this
                caller runs.
            note (Any): Attached to such an attempt.
            usable (Optional[Callable[[], bool]]): Whether ``job`` can still
                run (its session is open); always, if None.

        Raises:
            Exception: The flight's failure.
        """
        waiter = _Waiter(job, note, usable, self._loop.time())
        self._waiters.append(waiter)
        self._schedule_hedge()
        if self._newcomer_timer is None and not self.result.done():
            self._newcomer_timer = self._loop.call_at(
                self._last_attempt_at + self._hedge_after, self._newcomer_hedge
            )
        try:
            # shield(): a waiter that is cancelled (or out of time) must not
            # cancel what others may need.
            return await asyncio.shield(self.result)
        finally:
            self._waiters.remove(waiter)

    def _schedule_hedge(self) -> None:
        if self._hedge_timer is None and not self.result.done():
            self._hedge_timer = self._loop.call_at(self._next_hedge_at, self._hedge)

    def _hedge(self) -> None:
        self._hedge_timer = None
        if self.result.done():
            return
        waiter = next((w for w in reversed(self._waiters) if w.can_go()), None)
        if waiter is None:
            return  # nobody to hedge for: the next waiter schedules it again
        self._try_hedge(waiter)
        # Stalled for good, or overloaded: each hedge waits longer.
        spacing = self._hedge_after * min(2**self._hedges, 8)
        self._next_hedge_at = self._loop.time() + spacing
        self._schedule_hedge()

    def _newcomer_hedge(self) -> None:
        """Hedge for a caller that arrived after the newest attempt started."""
        self._newcomer_timer = None
        if self.result.done():
            return
        newcomers = [
            w for w in self._waiters if w.arrived > self._last_attempt_at and w.can_go()
        ]
        if not newcomers:
            return
        due = self._last_attempt_at + self._hedge_after
        if self._loop.time() < due:  # an attempt started since: wait for it first
            self._newcomer_timer = self._loop.call_at(due, self._newcomer_hedge)
            return
        self._try_hedge(newcomers[-1])

    def _try_hedge(self, waiter: _Waiter) -> None:
        """Start an attempt over ``waiter``'s route, if the budgets allow."""
        if self.result.done() or not waiter.can_go():
            return
        if not all(budget.has_one() for budget in self._budgets):
            return
        for budget in self._budgets:
            budget.spend()
        if len(self._attempts) >= self._max_attempts:
            # All lost, most likely: the oldest makes way, so that attempts
            # stay few and the newest waiter's still goes out.
            oldest = next(iter(self._attempts))
            del self._attempts[oldest]
            oldest.cancel()
        self.attempt(waiter.job, waiter.note)
        self._hedges += 1

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
                for budget in self._budgets:
                    budget.earn()
            self.result.set_result(task.result())
            for other in self._attempts:  # lost, or just slower: not needed
                other.cancel()
        elif not self._attempts:
            self.failed_note = note
            self.result.set_exception(failure)
        if self.result.done():
            for timer in (self._hedge_timer, self._newcomer_timer):
                if timer is not None:
                    timer.cancel()
            self._hedge_timer = self._newcomer_timer = None


async def _run(job: Callable[[], Awaitable[_T]]) -> _T:
    return await job()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class SingleFlight(Generic[_T]):
    """At most one flight of a job per event loop; see the module docstring.

    Args:
        budget (HedgeBudget): The process's budget its hedges draw on, beside
            one of its own.
        hedge_after (Optional[float]): Seconds an attempt runs, while somebody
            waits, before another starts beside it; :data:`HEDGE_AFTER` as it
            is when a flight starts, if None.
        max_attempts (int): Attempts in the air at once, at most.
    """

    __slots__ = (
        "__weakref__",
        "_budgets",
        "_flights",
        "_hedge_after",
        "_max_attempts",
    )

    def __init__(
        self,
        budget: HedgeBudget,
        *,
        hedge_after: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._flights: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Flight[_T]
        ] = weakref.WeakKeyDictionary()
        self._budgets = (_own_budget(), budget)
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
        flight = self._flights[loop] = Flight(
            loop, hedge_after, self._max_attempts, self._budgets
        )
        flight.result.add_done_callback(lambda _: self._landed(loop, flight))
        flight.attempt(job, note)
        return flight

    async def run(self, job: Callable[[], Awaitable[_T]], note: Any = None) -> _T:
        """Join the flight in the air, or start one, and wait for its result."""
        return await self.start(job, note).wait(job, note)

    def _landed(self, loop: asyncio.AbstractEventLoop, flight: Flight[_T]) -> None:
        if self._flights.get(loop) is flight:
            del self._flights[loop]
