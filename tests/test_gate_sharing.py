"""Gates that judge at the same time share one validation, and it changes no verdict.

A validation of the segment suite costs about as much for one segment as for a dozen, so
``tasks.judging`` validates together the segments that concurrent gates measured, and
``flows.takes`` runs a round's gates side by side so that they meet.
"""

import threading
import time
from pathlib import Path

import pytest

from factory.errors import IntegrityError
from factory.orders import load_order
from flows.produce import produce
from quality.judge import Judge, SegmentTarget
from quality.thresholds import load_thresholds
from tasks.clock import DeviceTime
from tasks.judging import judge_segment, judging
from tests import quality_clips as clips

EXAMPLES = Path(__file__).parent.parent / "examples"
THRESHOLDS = load_thresholds()
TARGET = SegmentTarget(
    width=clips.WIDTH, height=clips.HEIGHT, fps=clips.FPS, frames=48, duration_s=4.0
)
# Passing and failing segments (black, flicker, NaN from the renderer), on different takes.
CASES = (
    (clips.normal(), None, 1),
    (clips.black(12, 30), 0.0, 2),
    (clips.flicker(80), None, 1),
    (clips.normal(), 0.25, 3),
)


def _segment_validations() -> int:
    with judging(THRESHOLDS) as judge:
        return sum(result.suite_name == "segment" for result in judge.validations)


def _alone() -> list:
    """Each case's verdict from a validation of its own."""
    with judging(THRESHOLDS) as judge:
        return [
            judge.judge_segment(data, TARGET, nonfinite, attempt=attempt)
            for data, nonfinite, attempt in CASES
        ]


def test_rows_judged_together_get_the_verdicts_they_get_alone():
    with judging(THRESHOLDS) as judge:
        rows = [judge.measure_segment(data, TARGET, nonfinite) for data, nonfinite, _ in CASES]
        together = judge.judge_measured(rows, [attempt for _, _, attempt in CASES])
    assert together == _alone()
    assert [verdict.passed for verdict in together] == [True, False, False, False]
    assert [verdict.attempt for verdict in together] == [1, 2, 1, 3]


def _gates_at_once(cases) -> tuple[list, list[DeviceTime], float]:
    """Judge ``cases`` in threads that all arrive while the judge is busy; (verdict or
    error, device time) per case, and how long the judge was held busy."""
    outcomes: list = [None] * len(cases)
    devices = [DeviceTime() for _ in cases]

    def gate(position: int) -> None:
        data, nonfinite, attempt = cases[position]
        try:
            outcomes[position] = judge_segment(
                THRESHOLDS, data, TARGET, nonfinite, attempt, devices[position]
            )
        except IntegrityError as error:
            outcomes[position] = error

    threads = [threading.Thread(target=gate, args=(position,)) for position in range(len(cases))]
    # Held by another judgement (say an assembly's) while the gates arrive: they queue.
    with judging(THRESHOLDS):
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        busy = time.perf_counter() - start
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a gate never got its verdict"
    return outcomes, devices, busy


def test_concurrent_gates_share_one_validation_and_keep_their_verdicts():
    alone = _alone()
    before = _segment_validations()
    verdicts, devices, busy = _gates_at_once(CASES)
    assert _segment_validations() - before == 1
    assert verdicts == alone
    # Each gate is charged its measuring and its share of the validation, not its wait.
    assert all(0 < device.seconds < busy for device in devices)


def test_a_gate_whose_segment_cannot_be_read_fails_alone():
    cases = (CASES[0], (b"not a video", None, 1), CASES[1])
    outcomes, _, _ = _gates_at_once(cases)
    assert isinstance(outcomes[1], IntegrityError)
    alone = _alone()
    assert [outcomes[0], outcomes[2]] == [alone[0], alone[1]]


def test_a_lone_gate_is_validated_at_once():
    device = DeviceTime()
    verdict = judge_segment(THRESHOLDS, clips.normal(), TARGET, None, 1, device)
    assert verdict == _alone()[0]
    assert device.seconds > 0


@pytest.mark.slow
def test_a_rounds_gates_share_one_validation_in_the_flow(flow_env, tmp_path, monkeypatch):
    batches: list[int] = []
    judge_measured = Judge.judge_measured

    def counted(self, rows, attempts):
        batches.append(len(rows))
        return judge_measured(self, rows, attempts)

    monkeypatch.setattr(Judge, "judge_measured", counted)
    order = load_order(EXAMPLES / "tiny.yaml")
    delivery = produce(order, str(tmp_path / "store"), cache="off")
    assert batches == [2]
    assert len(delivery.segment_verdicts) == 2
    assert all(verdict.passed for verdict in delivery.segment_verdicts)
    gates = [run for run in delivery.runs if run.stage == "gate"]
    assert sorted(run.segment_index for run in gates) == [0, 1]
    assert all(run.device_seconds > 0 for run in gates)
