"""One quality judge per process and thresholds, shared by the stages that judge.

Built on the first judgement: importing Great Expectations costs seconds, which a fully
cached run never pays. A Great Expectations context is used by one thread at a time.

Gates that judge at the same time share one validation (``judge_segment``): a validation
costs about as much for one segment as for a dozen (``bench/RESULTS.md``), and it was half
of what a gate cost on the tiny model. Each gate measures its own segment on its own device
time; the validation's time is split between the gates it judged.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from factory.verdicts import Verdict
from quality.targets import SegmentTarget
from quality.thresholds import Thresholds
from tasks.stage import DeviceTimer

if TYPE_CHECKING:
    from quality.judge import Judge
    from quality.tables import Row

# How long a measured segment waits for an announced gate that has not arrived, counted from
# the last arrival: a stage task takes tens of milliseconds to start, more under load.
LINGER_S = 1.0


@contextmanager
def judging(thresholds: Thresholds) -> Iterator["Judge"]:
    """The process's judge for ``thresholds``, held for this thread alone."""
    shared = _shared(thresholds.model_dump_json())
    with shared.lock:
        yield shared.judge


@contextmanager
def gates_expected(thresholds: Thresholds, count: int) -> Iterator[None]:
    """Announce ``count`` gates about to judge with ``thresholds`` side by side.

    Until they have all arrived (or ``LINGER_S`` passed since the last arrival), a gate
    waits before measuring: their tasks start one after another, a small segment is measured
    before the next gate arrives, and a task starting beside a measuring would swell its
    device time. Then they measure one at a time and share one validation. A gate that
    never judges (its task failed first) costs the others a wait, never a verdict.
    """
    shared = _shared(thresholds.model_dump_json())
    announced = shared.announce(count)
    try:
        yield
    finally:
        shared.withdraw(announced)


def judge_segment(
    thresholds: Thresholds,
    data: bytes,
    target: SegmentTarget,
    nonfinite: float | None,
    attempt: int,
    device: DeviceTimer,
) -> Verdict:
    """The segment suite's verdict on one encoded segment, in one validation with the
    segments that other threads are judging meanwhile. ``device`` is charged this segment's
    measuring and its share of the validation, not the wait for the other segments."""
    return _shared(thresholds.model_dump_json()).judge_segment(
        data, target, nonfinite, attempt, device
    )


@dataclass
class _Ticket:
    """One segment waiting for its verdict."""

    row: "Row"
    attempt: int
    verdict: Verdict | None = None
    error: BaseException | None = None
    share_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.verdict is not None or self.error is not None


class _Announced:
    """Gates announced together (``gates_expected``) that have not arrived yet."""

    def __init__(self, count: int) -> None:
        self.remaining = count


class _SharedJudge:
    """A judge, and the segments measured for it that wait for a validation.

    The segments posted are validated as soon as no other segment is being measured or
    waiting to be, and no announced gate is still to come: a lone gate is judged at once,
    and gates that run together (a round's gates, side by side) in one validation.
    Waiting is never device time: only measuring and a share of the validation are.
    """

    def __init__(self, judge: "Judge") -> None:
        self.judge = judge
        # Held to measure or to validate: one at a time, so each one's device time is its
        # own work and not a share of the cores with another judgement (and GX's context
        # is used by one thread at a time).
        self.lock = threading.Lock()
        self._state = threading.Condition()
        self._measuring = 0  # judgements that arrived and have not yet posted their row
        self._pending: list[_Ticket] = []
        self._validating = False
        self._announced: list[_Announced] = []
        self._last_news = time.monotonic()  # the last arrival or post

    def announce(self, count: int) -> _Announced:
        announced = _Announced(count)
        with self._state:
            self._announced.append(announced)
        return announced

    def withdraw(self, announced: _Announced) -> None:
        with self._state:
            self._announced.remove(announced)
            self._state.notify_all()

    def judge_segment(
        self,
        data: bytes,
        target: SegmentTarget,
        nonfinite: float | None,
        attempt: int,
        device: DeviceTimer,
    ) -> Verdict:
        self._arrive()
        try:
            self._await_company()
            with self.lock, device():
                row = self.judge.measure_segment(data, target, nonfinite)
        except BaseException:
            self._posted(None)
            raise
        ticket = _Ticket(row=row, attempt=attempt)
        batch = self._posted(ticket)
        if batch:
            self._validate(batch)
        with self._state:
            self._state.wait_for(lambda: ticket.done)
        device.charge(ticket.share_s)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.verdict is not None
        return ticket.verdict

    def _arrive(self) -> None:
        with self._state:
            self._measuring += 1
            self._last_news = time.monotonic()
            # Which announcement a gate belonged to does not matter: only how many are due.
            for announced in self._announced:
                if announced.remaining:
                    announced.remaining -= 1
                    break
            self._state.notify_all()

    def _await_company(self) -> None:
        """Wait for the announced gates still to come before measuring: their tasks' start
        (Prefect's bookkeeping, fetching the segment) would otherwise share the cores with
        this measuring and swell its device time."""
        with self._state:
            while (linger := self._linger_s()) > 0:
                self._state.wait(linger)

    def _posted(self, ticket: _Ticket | None) -> list[_Ticket]:
        """Post a measured row (None: the measuring failed); wait until it is validated or
        this thread is the one to validate the pending rows, which it then gets."""
        with self._state:
            self._measuring -= 1
            self._last_news = time.monotonic()
            if ticket is not None:
                self._pending.append(ticket)
            self._state.notify_all()
            if ticket is None:
                return []
            while not ticket.done:
                ready = not self._validating and not self._measuring and ticket in self._pending
                linger = self._linger_s() if ready else None
                if ready and linger <= 0:
                    batch, self._pending = self._pending, []
                    self._validating = True
                    return batch
                self._state.wait(linger)
            return []

    def _linger_s(self) -> float:
        """How much longer to wait for an announced gate still to come (0: none is due)."""
        if not any(announced.remaining for announced in self._announced):
            return 0.0
        return LINGER_S - (time.monotonic() - self._last_news)

    def _validate(self, batch: list[_Ticket]) -> None:
        start = time.perf_counter()
        verdicts: list[Verdict] = []
        error: BaseException | None = None
        try:
            with self.lock:
                verdicts = self.judge.judge_measured(
                    [ticket.row for ticket in batch], [ticket.attempt for ticket in batch]
                )
        except BaseException as raised:
            error = raised
        share = (time.perf_counter() - start) / len(batch)
        with self._state:
            for position, ticket in enumerate(batch):
                ticket.share_s = share
                if error is not None:
                    ticket.error = error
                else:
                    ticket.verdict = verdicts[position]
            self._validating = False
            self._state.notify_all()


@lru_cache(maxsize=4)
def _shared(thresholds: str) -> _SharedJudge:
    # Imported here: the judge's decoding (PyAV, numpy) and Great Expectations are for runs
    # that judge something, not for a fully cached one.
    from quality.judge import Judge

    return _SharedJudge(Judge(Thresholds.model_validate_json(thresholds)))
