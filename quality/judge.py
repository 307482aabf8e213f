"""The judge: measures media and runs the suites on it, giving verdicts.

Build one ``Judge`` per process and keep it: it holds the Great Expectations context and
the three suites, and importing GX alone costs seconds (this module does not import it;
making a Judge does). Judge many segments per call where you can: one validation of N
segments costs little more than one of a single segment.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from factory.errors import BadInput
from factory.orders import Order
from factory.verdicts import Verdict
from quality.metrics import deliverable_metrics, segment_metrics
from quality.tables import Row, deliverable_row, segment_row, segment_rows
from quality.targets import (
    DeliverableTarget,
    SegmentTarget,
    deliverable_target,
    segment_target,
)
from quality.thresholds import Thresholds, load_thresholds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Judge", "SegmentTarget", "segment_target"]


class Judge:
    """Judges segments, deliverables and a run's lineage against the thresholds' suites."""

    def __init__(self, thresholds: Thresholds | Path | None = None) -> None:
        from quality.suites import Suites

        if not isinstance(thresholds, Thresholds):
            thresholds = load_thresholds(thresholds)
        self.thresholds = thresholds
        self.suites = Suites(thresholds)

    @property
    def suite_version(self) -> str:
        return self.thresholds.version

    @property
    def validations(self) -> list:
        """The GX validation results this judge kept (the last 1000), oldest first: what
        ``quality.data_docs.build_data_docs`` renders."""
        return list(self.suites.validations)

    def take_validations(self) -> list:
        """The kept validation results, oldest first, forgetting them (e.g. at a run's end)."""
        with self.suites.lock:
            taken = list(self.suites.validations)
            self.suites.validations.clear()
        return taken

    def judge_segments(
        self,
        items: Sequence[tuple[bytes, SegmentTarget]],
        nonfinite_shares: Sequence[float | None] | None = None,
        *,
        attempt: int = 1,
    ) -> list[Verdict]:
        """One verdict per (encoded segment, target), from a single validation.

        ``nonfinite_shares`` optionally gives, per segment, the share of NaN/inf in the
        renderer's float output (``quality.metrics.nonfinite_share``); None (or no list)
        means it was not measured, and that expectation then passes over it.
        """
        if not items:
            raise BadInput("judge_segments needs at least one segment")
        if nonfinite_shares is not None and len(nonfinite_shares) != len(items):
            raise BadInput(
                f"{len(nonfinite_shares)} non-finite shares for {len(items)} segments: give one "
                "per segment (None where it was not measured)"
            )
        black, frozen = self.thresholds.black, self.thresholds.frozen
        metrics = [segment_metrics(data, black, frozen) for data, _ in items]
        rows = segment_rows(metrics, [target for _, target in items], nonfinite_shares)
        return self.suites.judge("segment", rows, attempt=attempt)

    def measure_segment(
        self, data: bytes, target: SegmentTarget, nonfinite: float | None = None
    ) -> Row:
        """What the segment suite reads of one encoded segment: its metrics beside its target.

        Decoding makes this the costly half of judging a segment; ``judge_measured`` is the
        other half, and judges the rows of many segments in one validation.
        """
        metrics = segment_metrics(data, self.thresholds.black, self.thresholds.frozen)
        return segment_row(0, metrics, target, nonfinite)

    def judge_measured(self, rows: Sequence[Row], attempts: Sequence[int]) -> list[Verdict]:
        """One verdict per row of ``measure_segment``, each for its attempt, from one
        validation: the same verdicts as judging each segment on its own."""
        if not rows:
            raise BadInput("judge_measured needs at least one row")
        # The key names a row within this validation only; verdicts leave it out.
        keyed = [{**row, "segment": position} for position, row in enumerate(rows)]
        return self.suites.judge("segment", keyed, attempt=attempts)

    def judge_segment(
        self,
        data: bytes,
        target: SegmentTarget,
        nonfinite: float | None = None,
        *,
        attempt: int = 1,
    ) -> Verdict:
        """The verdict on one encoded segment against its target."""
        return self.judge_segments([(data, target)], [nonfinite], attempt=attempt)[0]

    def judge_deliverable(self, data: bytes, order: Order, *, attempt: int = 1) -> Verdict:
        """The verdict on a deliverable: its duration, size and segments against ``order``."""
        return self.judge_deliverable_target(data, deliverable_target(order), attempt=attempt)

    def judge_deliverable_target(
        self, data: bytes, target: DeliverableTarget, *, attempt: int = 1
    ) -> Verdict:
        """The verdict on a deliverable against ``target`` (``deliverable_target(order)``)."""
        row = deliverable_row(deliverable_metrics(data), target)
        return self.suites.judge("deliverable", [row], attempt=attempt)[0]

    def judge_lineage(self, frame: "pd.DataFrame") -> Verdict:
        """The verdict on a run's lineage table (``quality.lineage_table.lineage_frame``)."""
        missing = {"asset_digest", "stage", "problem", "record_verified", "parents_exist"}
        missing -= set(frame.columns)
        if missing:
            raise BadInput(
                f"the lineage table lacks the columns {sorted(missing)}; build it with "
                "quality.lineage_table.lineage_frame"
            )
        return self.suites.judge_table("lineage", frame)
