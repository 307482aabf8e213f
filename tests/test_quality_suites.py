"""The GX suites through the Judge: segments made to fail each expectation, one that passes,
a deliverable against its order, a run's lineage, and Data Docs written offline.

One Judge serves the whole module: importing Great Expectations takes seconds.
"""

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from factory.errors import BadInput
from factory.lineage import AssetInfo, CodeInfo, LineageRecord, ParentLink, StageInfo, sign_record
from factory.orders import Order, Segment
from quality.data_docs import build_data_docs
from quality.judge import Judge, SegmentTarget, segment_target
from quality.lineage_table import lineage_frame
from quality.suites import SuiteError
from quality.tables import segment_row
from quality.thresholds import THRESHOLDS_PATH, load_thresholds
from storage import keys
from storage.assets import asset_key, put_asset
from storage.lineage import RecordStore, record_key
from storage.lineage_reader import LineageReader
from storage.local import LocalStore
from storage.trust import load_trusted_keys, resolve_anchor
from tests import quality_clips as clips

TARGET = SegmentTarget(
    width=clips.WIDTH, height=clips.HEIGHT, fps=clips.FPS, frames=48, duration_s=4.0
)


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def failed(verdict) -> dict[str, object]:
    """metric → observed value of every failing expectation."""
    return {failure.metric: failure.observed for failure in verdict.failures}


# --- segments -----------------------------------------------------------------------------


def test_a_normal_segment_passes(judge, no_network):
    verdict = judge.judge_segment(clips.normal(), TARGET)
    assert verdict.passed, verdict.describe()
    assert verdict.suite == "segment"
    assert verdict.suite_version == load_thresholds().version == judge.suite_version
    assert verdict.metrics["frames"] == 48 and verdict.metrics["target_frames"] == 48
    assert verdict.metrics["black_share"] == 0.0


@pytest.mark.parametrize(
    ("make", "metric", "threshold", "check"),
    [
        (
            lambda: clips.black(12, 30),
            "black_share",
            "black_share_max",
            lambda seen: seen == pytest.approx(18 / 48),
        ),
        (lambda: clips.frozen(10, 40), "frozen_run_s", "frozen_run_max_s", lambda s: s > 1.0),
        (lambda: clips.flicker(80), "flicker_max", "flicker_max", lambda seen: seen > 40),
    ],
    ids=["black", "frozen", "flicker"],
)
def test_a_segment_made_to_fail_fails_that_expectation(judge, make, metric, threshold, check):
    verdict = judge.judge_segment(make(), TARGET)
    assert not verdict.passed
    seen = failed(verdict)
    assert metric in seen and check(seen[metric]), verdict.describe()
    failure = next(f for f in verdict.failures if f.metric == metric)
    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.expected == {"max_value": getattr(judge.thresholds.segment, threshold)}


def test_frozen_and_flicker_clips_fail_nothing_else(judge):
    frozen, flicker = judge.judge_segments(
        [(clips.frozen(10, 40), TARGET), (clips.flicker(80), TARGET)]
    )
    assert set(failed(frozen)) == {"frozen_run_s"}
    assert set(failed(flicker)) == {"flicker_max"}


def test_wrong_duration_fails_frames_and_duration(judge):
    target = TARGET.model_copy(update={"frames": 60, "duration_s": 5.0})
    verdict = judge.judge_segment(clips.normal(), target)
    seen = failed(verdict)
    assert set(seen) == {"frames", "duration_error_s"}
    assert seen["frames"] == 48
    assert seen["duration_error_s"] == pytest.approx(1.0)
    frames = next(f for f in verdict.failures if f.metric == "frames")
    assert frames.expectation == "expect_column_pair_values_to_be_equal"
    assert frames.expected == {"equal_to": "target_frames", "value": 60}


def test_wrong_size_fails_width_and_height(judge):
    target = TARGET.model_copy(update={"width": 320, "height": 180})
    seen = failed(judge.judge_segment(clips.normal(), target))
    assert seen == {"width": clips.WIDTH, "height": clips.HEIGHT}


def test_nan_frames_from_the_renderer_fail(judge):
    clean, nan = judge.judge_segments([(clips.normal(), TARGET)] * 2, [0.0, 0.25])
    assert clean.passed
    assert failed(nan) == {"nonfinite_share": 0.25}


def test_many_segments_are_judged_in_one_validation(judge):
    before = len(judge.validations)
    items = [
        (clips.normal(), TARGET),
        (clips.black(12, 30), TARGET),
        (clips.normal(), TARGET.model_copy(update={"width": 320})),
        (clips.normal(), TARGET),
    ]
    verdicts = judge.judge_segments(items, attempt=2)
    assert len(judge.validations) == before + 1
    assert [v.passed for v in verdicts] == [True, False, False, True]
    assert all(v.attempt == 2 for v in verdicts)
    assert "black_share" in failed(verdicts[1]) and "width" not in failed(verdicts[1])
    assert set(failed(verdicts[2])) == {"width"}


def test_the_same_segment_gets_the_same_verdict_byte_for_byte(judge):
    # Verdicts go into signed records: GX's result order must not leak into them.
    first = judge.judge_segment(clips.black(12, 30), TARGET)
    second = judge.judge_segment(clips.black(12, 30), TARGET)
    assert len(first.failures) > 2
    assert first.model_dump_json() == second.model_dump_json()


def test_segment_target_comes_from_the_order():
    order = Order(
        id="t",
        segments=[
            Segment(prompt="a", duration_s=2, fps=12, width=160, height=96),
            Segment(prompt="b", duration_s=1.5, fps=12, width=160, height=96),
        ],
    )
    assert segment_target(order, 1) == SegmentTarget(
        width=160, height=96, fps=12, frames=18, duration_s=1.5
    )
    with pytest.raises(BadInput, match="no segment 2"):
        segment_target(order, 2)


def test_a_crashed_expectation_is_an_error_not_a_verdict(judge):
    row = segment_row(0, judge_metrics(), TARGET)
    del row["flicker_max"]
    with pytest.raises(SuiteError, match=r"flicker_max.*could not be evaluated"):
        judge.suites.judge("segment", [row])


def judge_metrics():
    from quality.metrics import segment_metrics

    return segment_metrics(clips.normal())


def test_judge_segments_refuses_mismatched_shares(judge):
    with pytest.raises(BadInput, match="2 non-finite shares for 1 segments"):
        judge.judge_segments([(clips.normal(), TARGET)], [0.0, 0.0])


# --- thresholds ---------------------------------------------------------------------------


def test_thresholds_version_goes_into_the_verdict(tmp_path):
    text = THRESHOLDS_PATH.read_text().replace('version = "1"', 'version = "2-strict"')
    text = text.replace("black_share_max = 0.10", "black_share_max = 0.0")
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    strict = Judge(path)
    verdict = strict.judge_segment(clips.black(40, 41), TARGET)
    assert verdict.suite_version == "2-strict"
    assert failed(verdict)["black_share"] == pytest.approx(1 / 48)


def test_a_bad_thresholds_file_is_refused(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text(THRESHOLDS_PATH.read_text().replace("noise = 0.001", "noise = 2"))
    with pytest.raises(BadInput, match=r"frozen.noise"):
        load_thresholds(path)
    with pytest.raises(BadInput, match="do not exist"):
        load_thresholds(tmp_path / "missing.toml")


# --- deliverables -------------------------------------------------------------------------


def order_of(*seconds: float) -> Order:
    return Order(
        id="deliverable",
        segments=[
            Segment(prompt="p", duration_s=length, fps=12, width=clips.WIDTH, height=clips.HEIGHT)
            for length in seconds
        ],
    )


def test_a_deliverable_that_matches_its_order_passes(judge):
    verdict = judge.judge_deliverable(clips.joined(24, 36, 12), order_of(2, 3, 1))
    assert verdict.passed, verdict.describe()
    assert verdict.suite == "deliverable"
    assert verdict.metrics["segment_starts"] == [0, 24, 60]


def test_a_deliverable_missing_a_segment_fails(judge):
    verdict = judge.judge_deliverable(clips.joined(24, 36), order_of(2, 3, 1))
    seen = failed(verdict)
    assert seen["segment_count"] == 2
    assert seen["duration_error_s"] == pytest.approx(1.0)
    assert seen["frames"] == 60


def test_segments_in_the_wrong_order_fail_even_at_the_right_length(judge):
    verdict = judge.judge_deliverable(clips.joined(36, 24, 12), order_of(2, 3, 1))
    assert failed(verdict) == {"misplaced_segment_starts": 2}


# --- lineage completeness -----------------------------------------------------------------


class RunStore:
    """A store with the factory's keys, where a test writes a run's signed records."""

    def __init__(self, root: Path) -> None:
        self.keys_dir = root / "keys"
        keys.init(self.keys_dir)
        self.store = LocalStore(root / "store")
        keys.publish_public_keys(self.keys_dir, self.store)
        self.signer = keys.load_signer(self.keys_dir)
        self.records = RecordStore(self.store)

    def reader(self) -> LineageReader:
        anchor = resolve_anchor(None, self.keys_dir)
        return LineageReader(self.store, load_trusted_keys(self.store, anchor))

    def record(self, digest: str, stage: str, run: str, parents=(), reused_from=None) -> bytes:
        now = datetime.now(UTC)
        record = LineageRecord(
            asset=AssetInfo(digest=digest, media_type="video/mp4", size=1, uri="file:///x"),
            parents=[ParentLink(digest=d, record_digest=r) for d, r in parents],
            stage=StageInfo(name=stage, version="1"),
            order_id="order",
            flow_run_id=run,
            task_run_id="task",
            device_class="cpu",
            device_seconds=0.0,
            started=now,
            ended=now,
            code=CodeInfo(package_version="0.1.0"),
            key_id=self.signer.key_id,
            reused_from=reused_from,
        )
        return sign_record(record, self.signer)

    def produce(self, data: bytes, stage: str, run: str, parents=()) -> tuple[str, str]:
        digest = put_asset(self.store, data, "video/mp4").digest
        envelope = self.record(digest, stage, run, parents)
        return digest, self.records.write(envelope, digest, run)


@pytest.fixture
def run_store(tmp_path) -> RunStore:
    return RunStore(tmp_path)


def test_a_complete_run_passes(judge, run_store):
    render = run_store.produce(b"render", "render", "run-1")
    run_store.produce(b"composite", "composite", "run-1", [render])
    # A second run reuses the render from the cache and makes a new composite.
    reuse = run_store.record(render[0], "render", "run-2", reused_from=render[1])
    run_store.records.write_reuse(reuse, render[0], "run-2")
    run_store.produce(b"composite 2", "composite", "run-2", [render])
    for run in ("run-1", "run-2"):
        frame = lineage_frame(run_store.reader(), run)
        assert len(frame) == 2 and frame["record_verified"].all() and frame["parents_exist"].all()
        verdict = judge.judge_lineage(frame)
        assert verdict.passed, verdict.describe()
        assert verdict.suite == "lineage" and verdict.metrics["rows"] == 2


def test_a_missing_parent_fails_naming_the_child_and_why(judge, run_store):
    render = run_store.produce(b"render", "render", "run-1")
    composite, _ = run_store.produce(b"composite", "composite", "run-1", [render])
    run_store.store.delete(asset_key(render[0]))
    verdict = judge.judge_lineage(lineage_frame(run_store.reader(), "run-1"))
    assert not verdict.passed
    [failure] = verdict.failures
    assert failure.metric == "parents_exist"
    assert failure.observed["asset_digest"] == composite
    assert failure.observed["stage"] == "composite"
    assert "is not in the store" in failure.observed["problem"]


def test_a_replaced_record_fails(judge, run_store):
    render, _ = run_store.produce(b"render", "render", "run-1")
    other = run_store.record(render, "render", "someone-else")
    run_store.store.put(record_key(render), other)  # a plain overwrite, past write-once
    verdict = judge.judge_lineage(lineage_frame(run_store.reader(), "run-1"))
    [failure] = verdict.failures
    assert failure.metric == "record_verified"
    assert "replaced or altered" in failure.observed["problem"]


def test_a_run_with_no_records_fails(judge, run_store):
    verdict = judge.judge_lineage(lineage_frame(run_store.reader(), "never-ran"))
    [failure] = verdict.failures
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert failure.metric is None and failure.observed == 0


def test_judge_lineage_refuses_a_table_of_another_shape(judge):
    with pytest.raises(BadInput, match="lineage_frame"):
        judge.judge_lineage(pd.DataFrame({"asset_digest": ["x"]}))


# --- Data Docs ----------------------------------------------------------------------------


def test_data_docs_are_written_offline(judge, tmp_path, no_network):
    judge.judge_segments([(clips.normal(), TARGET), (clips.black(12, 30), TARGET)])
    taken = judge.take_validations()
    assert taken and judge.validations == []
    index = build_data_docs(taken[-1:], tmp_path / "docs")
    assert index == tmp_path / "docs" / "index.html" and index.is_file()
    pages = list((tmp_path / "docs" / "validations" / "segment").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text()
    assert "black_share" in page and "flicker_max" in page
    assert pages[0].relative_to(tmp_path / "docs").as_posix() in index.read_text()
    with pytest.raises(BadInput, match="no validations"):
        build_data_docs([], tmp_path / "empty")


def test_verdicts_are_json(judge):
    verdict = judge.judge_segment(clips.black(12, 30), TARGET)
    assert json.loads(verdict.model_dump_json())["failures"][0]["expectation"]
