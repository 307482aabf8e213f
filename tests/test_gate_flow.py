"""End to end: the quality gate rejects a take, the segment is taken again (next seed, then
the next model on its ladder), and the floor counts the rejected work.

The thresholds that force a rejection are found, not guessed: a probe order renders the
takes in question once under the shipped thresholds, and each test writes a thresholds
file whose bound falls between the takes it must reject and the one it must accept. The
tiny models are deterministic, so the bound is the same on every run.
"""

import tomllib
from pathlib import Path

import pytest

from factory.errors import QualityRejected
from factory.lineage import LineageRecord
from factory.orders import Order, parse_order
from factory.verdicts import Verdict
from flows.produce import produce
from quality.thresholds import THRESHOLDS_PATH
from storage.lineage import RUNS_PREFIX, RecordStore
from storage.lineage_reader import LineageReader
from storage.local import LocalStore
from storage.verification import verify
from storage.warehouse import Warehouse
from tests.run_index import run_records
from tests.trusted import local_trust

pytestmark = pytest.mark.slow

SEED = 7
# (thresholds key in [segment], the metric it bounds, True for an upper bound)
KNOBS = (
    ("luma_mean_max", "luma_mean_max", True),
    ("flicker_max", "flicker_max", True),
    ("bits_per_pixel_max", "bits_per_pixel", True),
    ("bits_per_pixel_min", "bits_per_pixel", False),
    ("luma_range_min", "luma_range_min", False),
)


def _segment(**fields) -> dict:
    return {
        "prompt": "a lighthouse",
        "duration_s": 1,
        "fps": 8,
        "width": 160,
        "height": 96,
        **fields,
    }


def _order(order_id: str, *segments: dict, attempts: int = 2) -> Order:
    return parse_order(
        {
            "id": order_id,
            "segments": list(segments),
            "composite": {"background_color": "#202020"},
            "encode": {"crf": 28, "preset": "ultrafast"},
            "quality": {"attempts": attempts},
        }
    )


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict[str, dict]:
    """The shipped suite's metrics of the takes the tests use: tiny at SEED and SEED + 1,
    tiny-plus at SEED."""
    store = tmp_path_factory.mktemp("probe-store")
    order = _order(
        "probe",
        _segment(seed=SEED),
        _segment(seed=SEED + 1),
        _segment(seed=SEED, model="tiny-plus"),
    )
    takes = ("tiny", "tiny+1", "plus")
    return dict(zip(takes, _metrics(produce(order, str(store)).segment_verdicts), strict=True))


def _metrics(verdicts: list[Verdict]) -> list[dict]:
    assert all(verdict.passed for verdict in verdicts), "the shipped suite must pass the probe"
    return [verdict.metrics for verdict in verdicts]


def _separating(bad: list[dict], good: dict) -> tuple[str, str, float | int]:
    """A [segment] threshold that fails every ``bad`` take and passes ``good``."""
    for key, metric, upper in KNOBS:
        worst = min(take[metric] for take in bad) if upper else max(take[metric] for take in bad)
        if upper and worst > good[metric]:
            return key, metric, (worst + good[metric]) / 2
        if not upper and worst < good[metric]:
            # luma_range_min is whole code values.
            value = int(worst) + 1 if key == "luma_range_min" else (worst + good[metric]) / 2
            return key, metric, value
    raise AssertionError(f"no threshold separates {bad} from {good}")


def _thresholds(path: Path, version: str, **segment: float) -> Path:
    data = tomllib.loads(THRESHOLDS_PATH.read_text())
    data["version"] = version
    data["segment"].update(segment)
    lines = [f'version = "{version}"']
    for section in ("black", "frozen", "segment", "deliverable"):
        lines.append(f"[{section}]")
        lines += [f"{name} = {value!r}" for name, value in data[section].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_rejected_take_is_rendered_again_with_the_next_seed(
    flow_env, probe, tmp_path, monkeypatch
):
    key, metric, bound = _separating([probe["tiny"]], probe["tiny+1"])
    monkeypatch.setenv(
        "FACTORY_QC_THRESHOLDS", str(_thresholds(tmp_path / "qc.toml", "retake", **{key: bound}))
    )
    store = tmp_path / "store"
    order = _order("retake", _segment(seed=SEED))
    delivery = produce(order, str(store))

    (verdict,) = delivery.segment_verdicts
    assert verdict.passed and verdict.attempt == 2 and verdict.suite_version == "retake"
    stages = [(run.stage, run.cache_hit) for run in delivery.runs]
    assert stages.count(("render", False)) == 2 and stages.count(("gate", False)) == 2

    # The deliverable verifies, and its lineage holds the rejected take's verdict too.
    report = verify(
        LocalStore(store), local_trust(LocalStore(store)), digest=delivery.deliverable.digest
    )
    assert report.verified, report.problems
    (gate,) = report.tree.parents
    assert gate.verdict == verdict
    render = gate.parents[0].parents[0].parents[0]
    assert render.record.parameters["seed"] == SEED + 1
    rejected = _rejected_gates(LocalStore(store), delivery.flow_run_id)
    assert [v.attempt for v in rejected] == [1]
    assert [f.metric for f in rejected[0].failures] == [metric]
    assert rejected[0].failures[0].observed == probe["tiny"][metric]

    # The floor counts the rejected take: yield below 1, and its device time is in the
    # order's cost (as waste), so in its cost per delivered minute.
    warehouse = Warehouse(flow_env / "floor" / "catalog.sqlite")
    _, rows = warehouse.query(
        "select outcome, model from int_segment_passes where order_id = ? order by pass_no",
        [order.id],
    )
    assert rows == [("rejected", "tiny"), ("accepted", "tiny")]
    _, rows = warehouse.query(
        "select sum(cost), sum(waste_cost), sum(waste_device_seconds), sum(delivered_minutes) "
        "from cost_per_delivered_minute where order_id = ?",
        [order.id],
    )
    cost, waste, waste_seconds, minutes = rows[0]
    first_take = delivery.runs[:4]  # render, composite, encode, gate of take 1, in order
    assert [run.stage for run in first_take] == ["render", "composite", "encode", "gate"]
    assert waste_seconds == pytest.approx(sum(run.device_seconds for run in first_take))
    assert 0 < waste < cost
    assert minutes == pytest.approx(order.duration_s / 60)

    # A warm rerun takes the same two takes from the cache, the rejection included.
    again = produce(order, str(store))
    assert again.deliverable == delivery.deliverable
    assert all(run.cache_hit for run in again.runs)
    assert again.segment_verdicts[0].attempt == 2


def test_the_ladder_escalates_when_every_take_of_the_cheap_model_fails(
    flow_env, probe, tmp_path, monkeypatch
):
    key, _, bound = _separating([probe["tiny"], probe["tiny+1"]], probe["plus"])
    monkeypatch.setenv(
        "FACTORY_QC_THRESHOLDS", str(_thresholds(tmp_path / "qc.toml", "ladder", **{key: bound}))
    )
    store = tmp_path / "store"
    order = _order("ladder", _segment(seed=SEED, escalation=["tiny-plus"]))
    delivery = produce(order, str(store))

    assert delivery.segment_verdicts[0].attempt == 3
    report = verify(
        LocalStore(store), local_trust(LocalStore(store)), digest=delivery.deliverable.digest
    )
    assert report.verified, report.problems
    render = report.tree.parents[0].parents[0].parents[0].parents[0]
    assert (render.model, render.record.parameters["seed"]) == ("tiny-plus", SEED)
    assert [v.attempt for v in _rejected_gates(LocalStore(store), delivery.flow_run_id)] == [1, 2]

    # The floor shows the minute ended on tiny-plus, and what the escalation cost on tiny.
    warehouse = Warehouse(flow_env / "floor" / "catalog.sqlite")
    _, rows = warehouse.query(
        "select outcome, model from int_segment_passes where order_id = ? order by pass_no",
        [order.id],
    )
    assert rows == [("rejected", "tiny"), ("rejected", "tiny"), ("accepted", "tiny-plus")]
    _, rows = warehouse.query(
        "select model, sum(delivered_minutes), sum(waste_cost) > 0 "
        "from cost_per_delivered_minute where order_id = ? and model like 'tiny%' "
        "group by model order by model",
        [order.id],
    )
    assert rows == [("tiny", 0.0, True), ("tiny-plus", pytest.approx(order.duration_s / 60), False)]


def test_an_order_whose_segment_exhausts_its_takes_fails_naming_what_failed(
    flow_env, probe, tmp_path, monkeypatch
):
    # No frame spans all 255 code values: every take fails.
    monkeypatch.setenv(
        "FACTORY_QC_THRESHOLDS",
        str(_thresholds(tmp_path / "qc.toml", "impossible", luma_range_min=255)),
    )
    store = tmp_path / "store"
    order = _order("hopeless", _segment(seed=SEED), attempts=1)
    with pytest.raises(QualityRejected) as raised:
        produce(order, str(store))
    message = str(raised.value)
    assert "segment 0: 1 takes (tiny) all rejected" in message
    assert "expect_column_values_to_be_between(luma_range_min)" in message
    assert f"observed {probe['tiny']['luma_range_min']}" in message
    assert "quality.attempts" in message
    # The rejected take is on record; nothing was assembled.
    (run,) = {
        key.removeprefix(RUNS_PREFIX).split("/")[0] for key in LocalStore(store).list(RUNS_PREFIX)
    }
    records = _records(LocalStore(store), run)
    assert sorted(record.stage.name for record in records) == [
        "composite",
        "encode",
        "gate",
        "render",
    ]
    assert [record.verdict.passed for record in records if record.verdict] == [False]


def _records(store: LocalStore, flow_run_id: str) -> list[LineageRecord]:
    """Every record the run produced, each verified."""
    reader = LineageReader(store, local_trust(store))
    records = RecordStore(store)
    return [
        reader.check(records.read(digest), digest) for digest, _ in run_records(store, flow_run_id)
    ]


def _rejected_gates(store: LocalStore, flow_run_id: str) -> list[Verdict]:
    verdicts = [
        record.verdict
        for record in _records(store, flow_run_id)
        if record.verdict is not None and not record.verdict.passed
    ]
    return sorted(verdicts, key=lambda verdict: verdict.attempt)
