"""Timing shared by every stage: wall time for the run, device time for the compute inside it."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from factory.assets import AssetRef, RunRecord
from factory.errors import StoreTimedOut, StoreUnavailable
from factory.stages import StageName
from tasks import progress


class DeviceTime:
    """A stage run's device-seconds: ``with device():`` brackets the part that occupies the
    device; ``device.charge(seconds)`` adds this run's share of work done once for several
    runs (one suite validation that judged several gates' segments)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def charge(self, seconds: float) -> None:
        self.seconds += seconds


class StageClock:
    """Measures one stage run; ``device`` measures the part that occupies the device."""

    def __init__(self, stage: StageName, segment_index: int | None, device_class: str) -> None:
        self.stage: StageName = stage
        self.segment_index = segment_index
        self.device_class = device_class
        self.device = DeviceTime()
        self.started = datetime.now(UTC)
        self._start = time.perf_counter()

    @property
    def device_seconds(self) -> float:
        return self.device.seconds

    def run_record(self, asset: AssetRef) -> RunRecord:
        """The run so far; device-seconds are final once the compute is done."""
        return RunRecord(
            stage=self.stage,
            segment_index=self.segment_index,
            device_class=self.device_class,
            device_seconds=self.device_seconds,
            wall_seconds=time.perf_counter() - self._start,
            started=self.started,
            ended=datetime.now(UTC),
            output_digest=asset.digest,
        )


@contextmanager
def stage_clock(
    stage: StageName, segment_index: int | None, device_class: str = "cpu"
) -> Iterator[StageClock]:
    """A clock for one stage run that also reports started/finished/failed to progress bars."""
    progress.emit(stage, segment_index, "started")
    try:
        yield StageClock(stage, segment_index, device_class)
    except BaseException:
        progress.emit(stage, segment_index, "failed")
        raise
    progress.emit(stage, segment_index, "finished")


TASK_RETRIES = 2


def is_transient_error(error: BaseException) -> bool:
    """What a second try can fix: an unreachable store, a dropped connection, a timeout."""
    if isinstance(error, StoreTimedOut):
        return False
    return isinstance(error, StoreUnavailable | ConnectionError | TimeoutError)


def is_transient(task, task_run, state) -> bool:
    """Prefect retry condition for every stage task."""
    return is_transient_error(state.result(raise_on_failure=False))
