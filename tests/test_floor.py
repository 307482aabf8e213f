"""The factory floor: events in the store, the DuckDB warehouse and every mart, by hand.

The fixture is one day (2026-01-05, UTC) of two orders on three workers. Every
expected number below is worked out by hand in the comments beside it.

Order A (2 segments, gpu-h100 at 3.60/h = 0.001 per second, worker w1):
  flow run fa1
     1  seg 0 render  attempt 1  wan-a  retried    30 s  10:00:00 +31 s
     2  seg 0 render  attempt 2  wan-a  completed  60 s  10:00:40 +62 s  -> R0
     3  seg 0 composite                 completed   6 s  10:01:50 +7 s   -> C0
     4  seg 0 encode                    completed  12 s  10:02:00 +13 s  -> E0
     5  seg 1 render  attempt 1  wan-b  completed  60 s  10:00:00 +61 s  -> R1
     6  seg 1 composite                 completed   6 s  10:01:10 +8 s   -> C1
     7  seg 1 encode                    completed  12 s  10:01:20 +14 s  -> E1
     8  seg 1 gate                      rejected    2 s  10:01:40 +2 s
     9  seg 1 render  attempt 1  wan-b  completed  60 s  10:03:00 +63 s  -> R1b (re-render)
    10  seg 1 composite                 completed   6 s  10:04:10 +6 s   -> C1b
    11  seg 1 encode                    failed     12 s  10:04:20 +12 s  (the run fails)
  flow run fa2 (the rerun: the cache serves what fa1 finished)
    12  seg 0 render             wan-a  cache_hit   1 s  11:00:00 +1 s   -> R0
    13  seg 0 composite                 cache_hit   0 s  11:00:02 +0.5 s -> C0
    14  seg 0 encode                    cache_hit   0 s  11:00:03 +0.5 s -> E0
    15  seg 1 render             wan-b  cache_hit   0 s  11:00:00 +1 s   -> R1b
    16  seg 1 composite                 cache_hit   0 s  11:00:02 +0.5 s -> C1b
    17  seg 1 encode                    completed  12 s  11:00:03 +13 s  -> E1b
    18  assemble                        completed   6 s  11:00:20 +7 s   -> D, 120 s delivered
Order B (1 segment, worker w2, cpu at 0.36/h = 0.0001 per second):
    19  seg 0 render             wan-b  cache_hit   0 s  10:40:00 +1 s   -> R1 (A's rejected render)
    20  seg 0 composite                 completed   4 s  10:40:05 +5 s   -> CB
    21  seg 0 encode                    completed   8 s  10:59:56 +8 s   -> EB (spans 11:00)
    22  assemble on "mystery" (default 1.80/h)  completed 2 s 11:00:10 +2 s -> DB, 60 s delivered
Availability: w1 10:00-11:30 and 11:00-12:00 (overlap, merged), w2 10:30-11:30,
w3 10:00-11:00 (never busy).
Lineage (signed, published key): R0, C0, E0, R1b, C1b, E1b, D. DB is signed by a key
the store does not publish: ingest must reject it. R1 has no record.

The re-delivery fixture (`refloor`) adds a second day, 2026-01-06, on w1 (gpu-h100, no
availability reported that day): flow run fa3 reruns order A at 09:00, every stage a
cache hit (renders 1 s each, the rest 0 s), and its assemble hands D over again, a
re-delivery; at 10:00 order C, a new order with A's recipe, gets D the same way (flow
run fc), a new delivery. Events 23-29 and 30-36, below.
"""

import hashlib
import itertools
import json
import os
import re
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from factory.errors import BadInput, IntegrityError, WriteConflict
from factory.floor import (
    FloorEvent,
    LatencyBudget,
    PriceCard,
    WorkerAvailability,
    load_latency_budget,
    load_price_card,
)
from factory.lineage import (
    AssetInfo,
    CodeInfo,
    LineageRecord,
    ModelInfo,
    ParentLink,
    StageInfo,
    sign_record,
)
from factory.stages import SEGMENT_STAGES
from storage import keys
from storage.ancestry import ancestry as store_ancestry
from storage.floor_events import (
    EventWriter,
    list_event_keys,
    parse_events,
)
from storage.lineage import RecordStore
from storage.local import LocalStore
from storage.objectstore import ObjectStore
from storage.trust import TrustAnchor, load_trusted_keys, local_anchor
from storage.warehouse import (
    Warehouse,
    WarehouseMissing,
    connect_export,
    summary,
)

DAY = "2026-01-05"
GPU = "gpu-h100"
PRICES = PriceCard(
    currency="USD",
    royalty_per_delivered_minute=0.50,
    device_hour={"default": 1.80, GPU: 3.60, "cpu": 0.36},
)
BUDGET = LatencyBudget(
    end_to_end_ms=120_000,
    stages={
        "render": 65_000,
        "composite": 8_000,
        "encode": 15_000,
        "gate": 1_000,
        "assemble": 10_000,
    },
)
W1, W2, W3 = "w1:101", "w2:202", "w3:303"


DAY2 = "2026-01-06"


def at(hms: str) -> datetime:
    """A time of the fixture's day, or of another day ('2026-01-06T09:00:00')."""
    return datetime.fromisoformat(f"{hms if 'T' in hms else f'{DAY}T{hms}'}+00:00")


def digest_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


# n, order, flow, task, segment, stage, attempt, model, status, device s, start, wall s, output,
# worker, device class, delivered seconds
EVENTS = [
    (1, "A", "fa1", "t-r0", 0, "render", 1, "wan-a", "retried", 30, "10:00:00", 31, None),
    (2, "A", "fa1", "t-r0", 0, "render", 2, "wan-a", "completed", 60, "10:00:40", 62, "R0"),
    (3, "A", "fa1", "t-c0", 0, "composite", 1, None, "completed", 6, "10:01:50", 7, "C0"),
    (4, "A", "fa1", "t-e0", 0, "encode", 1, None, "completed", 12, "10:02:00", 13, "E0"),
    (5, "A", "fa1", "t-r1", 1, "render", 1, "wan-b", "completed", 60, "10:00:00", 61, "R1"),
    (6, "A", "fa1", "t-c1", 1, "composite", 1, None, "completed", 6, "10:01:10", 8, "C1"),
    (7, "A", "fa1", "t-e1", 1, "encode", 1, None, "completed", 12, "10:01:20", 14, "E1"),
    (8, "A", "fa1", "t-g1", 1, "gate", 1, None, "rejected", 2, "10:01:40", 2, None),
    (9, "A", "fa1", "t-r1b", 1, "render", 1, "wan-b", "completed", 60, "10:03:00", 63, "R1b"),
    (10, "A", "fa1", "t-c1b", 1, "composite", 1, None, "completed", 6, "10:04:10", 6, "C1b"),
    (11, "A", "fa1", "t-e1b", 1, "encode", 1, None, "failed", 12, "10:04:20", 12, None),
    (12, "A", "fa2", "t2-r0", 0, "render", 1, "wan-a", "cache_hit", 1, "11:00:00", 1, "R0"),
    (13, "A", "fa2", "t2-c0", 0, "composite", 1, None, "cache_hit", 0, "11:00:02", 0.5, "C0"),
    (14, "A", "fa2", "t2-e0", 0, "encode", 1, None, "cache_hit", 0, "11:00:03", 0.5, "E0"),
    (15, "A", "fa2", "t2-r1", 1, "render", 1, "wan-b", "cache_hit", 0, "11:00:00", 1, "R1b"),
    (16, "A", "fa2", "t2-c1", 1, "composite", 1, None, "cache_hit", 0, "11:00:02", 0.5, "C1b"),
    (17, "A", "fa2", "t2-e1", 1, "encode", 1, None, "completed", 12, "11:00:03", 13, "E1b"),
    (18, "A", "fa2", "t2-asm", None, "assemble", 1, None, "completed", 6, "11:00:20", 7, "D"),
    (19, "B", "fb", "tb-r", 0, "render", 1, "wan-b", "cache_hit", 0, "10:40:00", 1, "R1"),
    (20, "B", "fb", "tb-c", 0, "composite", 1, None, "completed", 4, "10:40:05", 5, "CB"),
    (21, "B", "fb", "tb-e", 0, "encode", 1, None, "completed", 8, "10:59:56", 8, "EB"),
    (22, "B", "fb", "tb-asm", None, "assemble", 1, None, "completed", 2, "11:00:10", 2, "DB"),
]


def rerun(first: int, order: str, flow: str, start: str) -> list[tuple]:
    """A run of A's recipe served entirely from the cache, delivering D again."""
    t = f"{DAY2}T{start}"
    later = f"{DAY2}T{start[:-2]}02"
    last = f"{DAY2}T{start[:-2]}04"
    return [
        (first, order, flow, f"{flow}-r0", 0, "render", 1, "wan-a", "cache_hit", 1, t, 1, "R0"),
        (first + 1, order, flow, f"{flow}-r1", 1, "render", 1, "wan-b", "cache_hit", 1, t, 1,
         "R1b"),
        (first + 2, order, flow, f"{flow}-c0", 0, "composite", 1, None, "cache_hit", 0, later,
         0.5, "C0"),
        (first + 3, order, flow, f"{flow}-c1", 1, "composite", 1, None, "cache_hit", 0, later,
         0.5, "C1b"),
        (first + 4, order, flow, f"{flow}-e0", 0, "encode", 1, None, "cache_hit", 0, later, 1,
         "E0"),
        (first + 5, order, flow, f"{flow}-e1", 1, "encode", 1, None, "cache_hit", 0, later, 1,
         "E1b"),
        (first + 6, order, flow, f"{flow}-asm", None, "assemble", 1, None, "cache_hit", 0, last,
         0.5, "D"),
    ]  # fmt: skip


REDELIVERY_EVENTS = rerun(23, "A", "fa3", "09:00:00") + rerun(30, "C", "fc", "10:00:00")
DELIVERED = {18: 120.0, 22: 60.0, 29: 120.0, 36: 120.0}


def make_event(row: tuple) -> FloorEvent:
    n, order, flow, task, segment, stage, attempt, model, status, device, start, wall, out = row
    worker, device_class = (
        (W1, GPU) if order in ("A", "C") else (W2, "mystery" if n == 22 else "cpu")
    )
    return FloorEvent(
        event_id=f"{n:032x}",
        order_id=order,
        flow_run_id=flow,
        task_run_id=task,
        segment_index=segment,
        stage=stage,
        attempt=attempt,
        model=model,
        device_class=device_class,
        worker_id=worker,
        started=at(start),
        ended=at(start) + timedelta(seconds=wall),
        device_seconds=device,
        status=status,
        bytes_in=1000,
        bytes_out=2000 if out else 0,
        output_digest=digest_of(out) if out else None,
        delivered_seconds=DELIVERED.get(n, 0.0),
    )


WAN_A = ModelInfo(
    name="wan-a",
    weights_fingerprint=digest_of("weights a"),
    training_provenance=[
        {"source": "stock footage library A", "license": "licensed"},
        {"source": "public-domain film archive", "license": "PD"},
    ],
    royalty_routing=[{"holder": "studio-x", "share": 0.6}, {"holder": "lab-y", "share": 0.4}],
)
WAN_B = ModelInfo(
    name="wan-b",
    weights_fingerprint=digest_of("weights b"),
    training_provenance=[{"source": "lab-y synthetic set", "license": "CC-BY-4.0"}],
    royalty_routing=[{"holder": "lab-y", "share": 1.0}],
)
# name, stage, parents, model, parameters, device s, start, wall, flow run
RECORDS = [
    ("R0", "render", [], WAN_A, {"frames": 1440, "fps": 16}, 60, "10:00:40", 62, "fa1"),
    ("C0", "composite", ["R0"], None, {"fps": 16}, 6, "10:01:50", 7, "fa1"),
    ("E0", "encode", ["C0"], None, {"fps": 16, "crf": 23}, 12, "10:02:00", 13, "fa1"),
    ("R1b", "render", [], WAN_B, {"frames": 480, "fps": 16}, 60, "10:03:00", 63, "fa1"),
    ("C1b", "composite", ["R1b"], None, {"fps": 16}, 6, "10:04:10", 6, "fa1"),
    ("E1b", "encode", ["C1b"], None, {"fps": 16, "crf": 23}, 12, "11:00:03", 13, "fa2"),
    ("D", "assemble", ["E0", "E1b"], None, {"segments": 2}, 6, "11:00:20", 7, "fa2"),
]


def write_records(store: ObjectStore, keys_dir: Path) -> dict[str, str]:
    """Sign and store the lineage fixture; the record digest of each asset by name."""
    keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    signer = keys.load_signer(keys_dir)
    records = RecordStore(store)
    written: dict[str, str] = {}
    for name, stage, parents, model, params, device, start, wall, flow in RECORDS:
        digest = digest_of(name)
        record = LineageRecord(
            asset=AssetInfo(
                digest=digest, media_type="video/mp4", size=100, uri=store.uri(f"a/{digest}")
            ),
            parents=[ParentLink(digest=digest_of(p), record_digest=written[p]) for p in parents],
            stage=StageInfo(name=stage, version="1"),
            order_id="A",
            flow_run_id=flow,
            task_run_id=f"task-{name}",
            model=model,
            parameters=params,
            device_class=GPU,
            device_seconds=device,
            started=at(start),
            ended=at(start) + timedelta(seconds=wall),
            code=CodeInfo(package_version="0.1.0"),
            key_id=signer.key_id,
        )
        written[name] = records.write(sign_record(record, signer), digest, flow)
    # Order B's deliverable, signed by a key the store never published.
    rogue = keys.LineageSigner(Ed25519PrivateKey.generate())
    forged = LineageRecord(
        asset=AssetInfo(digest=digest_of("DB"), media_type="video/mp4", size=1, uri="x"),
        stage=StageInfo(name="assemble", version="1"),
        order_id="B",
        flow_run_id="fb",
        task_run_id="tb-asm",
        device_class="mystery",
        device_seconds=2,
        started=at("11:00:10"),
        ended=at("11:00:12"),
        code=CodeInfo(package_version="0.1.0"),
        key_id=rogue.key_id,
    )
    RecordStore(store).write(sign_record(forged, rogue), digest_of("DB"), "fb")
    return written


def write_floor(store: ObjectStore) -> None:
    """The fixture's events and availability, as the flow and its workers would write them."""
    events = {row[0]: make_event(row) for row in EVENTS}
    writer = EventWriter(store)
    # The failing task writes its own failure event; the flow's final flush repeats it.
    writer.write_event(events[11])
    writer.write_batch("fa1", "final", [events[n] for n in range(1, 12)])
    writer.write_batch("fa2", "final", [events[n] for n in range(12, 19)])
    writer.write_batch("fb", "final", [events[n] for n in range(19, 23)])

    def up(worker: str, device: str, start: str, end: str) -> WorkerAvailability:
        return WorkerAvailability(
            worker_id=worker, device_class=device, up_from=at(start), up_to=at(end)
        )

    writer.write_availability(W1, [up(W1, GPU, "10:00:00", "11:30:00")], "b1")
    writer.write_availability(W1, [up(W1, GPU, "11:00:00", "12:00:00")], "b2")
    writer.write_availability(W2, [up(W2, "cpu", "10:30:00", "11:30:00")], "b1")
    writer.write_availability(W3, [up(W3, "cpu", "10:00:00", "11:00:00")], "b1")


def populate(store: ObjectStore, keys_dir: Path) -> None:
    write_records(store, keys_dir)
    write_floor(store)


def write_redeliveries(store: ObjectStore) -> None:
    """Day two: A's fully cached rerun (a re-delivery) and order C (a new delivery of D)."""
    events = [make_event(row) for row in REDELIVERY_EVENTS]
    EventWriter(store).write_batch("fa3", "final", events[:7])
    EventWriter(store).write_batch("fc", "final", events[7:])


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Warehouse]:
    root = tmp_path_factory.mktemp("floor")
    store = LocalStore(root / "store")
    populate(store, root / "keys")
    warehouse = Warehouse(root / "floor.sqlite", price_card=PRICES, latency_budget=BUDGET)
    report = warehouse.ingest(store, local_anchor(root / "keys"))
    assert report.loaded == {"events": 4, "availability": 4, "lineage": 7}
    return store, warehouse


@pytest.fixture(scope="module")
def refloor(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The fixture plus day two: a re-delivery of A's deliverable, and order C's."""
    root = tmp_path_factory.mktemp("refloor")
    store = LocalStore(root / "store")
    populate(store, root / "keys")
    write_redeliveries(store)
    warehouse = Warehouse(root / "floor.sqlite", price_card=PRICES, latency_budget=BUDGET)
    report = warehouse.ingest(store, local_anchor(root / "keys"))
    assert report.loaded == {"events": 6, "availability": 4, "lineage": 7}
    return warehouse


def rows(warehouse: Warehouse, sql: str) -> list[dict]:
    columns, values = warehouse.query(sql)
    return [dict(zip(columns, row, strict=True)) for row in values]


# -- events, config -------------------------------------------------------------------------


def test_event_contract():
    event = make_event(EVENTS[11])
    assert event.cache_hit and event.status == "cache_hit"
    assert event.wall_seconds == 1
    assert FloorEvent.model_validate_json(event.model_dump_json()) == event
    assert '"started":"2026-01-05T11:00:00Z"' in event.model_dump_json()
    base = event.model_dump()
    with pytest.raises(ValidationError, match="cache_hit"):
        FloorEvent(**{**base, "status": "completed", "cache_hit": True})
    with pytest.raises(ValidationError, match="delivered_seconds"):
        FloorEvent(**{**base, "delivered_seconds": 3.0})
    with pytest.raises(ValidationError, match="before started"):
        FloorEvent(**{**base, "ended": at("10:00:00")})
    with pytest.raises(ValidationError, match="timezone"):
        FloorEvent(**{**base, "started": datetime(2026, 1, 5, 11)})
    with pytest.raises(ValidationError):
        FloorEvent(**{**base, "stage": "paint"})
    with pytest.raises(ValidationError):
        FloorEvent(**{**base, "attempt": 0})
    fresh = FloorEvent(**{k: v for k, v in base.items() if k != "event_id"})
    assert len(fresh.event_id) == 32
    with pytest.raises(ValidationError, match="worker_id"):
        FloorEvent(**{k: v for k, v in base.items() if k != "worker_id"})


def test_event_from_run_record():
    from factory.assets import RunRecord

    run = RunRecord(
        stage="render",
        segment_index=3,
        device_class="cpu",
        device_seconds=1.5,
        wall_seconds=2.0,
        started=at("10:00:00"),
        ended=at("10:00:02"),
        output_digest=digest_of("x"),
    )
    event = FloorEvent.from_run(
        run, order_id="o", flow_run_id="f", task_run_id="t", model="tiny", attempt=2,
        worker_id="host:gpu-1",
    )  # fmt: skip
    assert (event.stage, event.segment_index, event.attempt, event.output_digest) == (
        "render",
        3,
        2,
        digest_of("x"),
    )
    failed = FloorEvent.from_run(
        run, order_id="o", flow_run_id="f", task_run_id="t", status="failed", worker_id="w"
    )
    assert failed.output_digest is None


def test_shipped_config_loads_and_covers_the_chain(tmp_path):
    card = load_price_card()
    # Every device is priced: the CPU, and any GPU the card does not name (at the default).
    assert card.rate("cpu") > 0 and card.rate("some new GPU") == card.device_hour["default"] > 0
    budget = load_latency_budget()
    # Every stage a delivery runs through has a budget, and together they fit the target.
    assert set(SEGMENT_STAGES) | {"assemble"} <= set(budget.stages)
    assert sum(budget.stages.values()) <= budget.end_to_end_ms
    # A warehouse built with the shipped config has its price card and budget tables.
    warehouse = Warehouse(tmp_path / "shipped.sqlite")
    warehouse.refresh_models()
    assert rows(warehouse, "select count(*) as n from price_card") == [{"n": len(card.device_hour)}]
    stages = {r["stage"] for r in rows(warehouse, "select stage from latency_budget")}
    assert stages == {*budget.stages, "end_to_end"}


def test_latency_budget_over_the_end_to_end_target_is_bad_input(tmp_path):
    path = tmp_path / "budget.toml"
    path.write_text("end_to_end_ms = 200\n[stages]\nrender = 150\ncomposite = 40\nencode = 30\n")
    with pytest.raises(BadInput, match=r"add up to 220 ms .* more than the end-to-end target"):
        load_latency_budget(path)
    path.write_text("end_to_end_ms = 200\n[stages]\npaint = 10\n")
    with pytest.raises(BadInput, match="unknown stage"):
        load_latency_budget(path)
    path.write_text("end_to_end_ms = 200\n[stages]\nrender = 0\n")
    with pytest.raises(BadInput, match="budgets are > 0"):
        load_latency_budget(path)
    with pytest.raises(BadInput, match="does not exist"):
        load_latency_budget(tmp_path / "missing.toml")


def test_price_card_validation(tmp_path):
    path = tmp_path / "prices.toml"
    good = 'currency = "EUR"\nroyalty_per_delivered_minute = 0.2\n[device_hour]\ndefault = 1\n'
    path.write_text(good)
    assert load_price_card(path).currency == "EUR"
    cases = {
        'currency = "EUR"\nroyalty_per_delivered_minute = 0.2\n[device_hour]\ncpu = 1\n': (
            "default"
        ),
        good.replace("default = 1", "default = -1"): "finite and ≥ 0",
        good.replace('"EUR"', '"euro"'): "currency",
        good.replace("0.2", "-0.2"): "royalty_per_delivered_minute",
        "surprise = 1\n" + good: "surprise: Extra inputs",
        good.replace("default = 1", "default = nan"): "default",
        "currency = ": "cannot be read",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(BadInput, match=message):
            load_price_card(path)


# -- the store side -------------------------------------------------------------------------


def test_event_objects_are_write_once_batches(tmp_path):
    store = LocalStore(tmp_path)
    writer = EventWriter(store)
    events = [make_event(row) for row in EVENTS[:3]]
    key = writer.write_batch("fa1", "b1", events)
    assert key == "floor/events/fa1/b1.jsonl"
    assert writer.write_batch("fa1", "b1", events) == key  # a retried flush: no-op
    with pytest.raises(WriteConflict):
        writer.write_batch("fa1", "b1", events[:1])
    assert parse_events(store.get(key)) == events
    assert list_event_keys(store) == [key]
    with pytest.raises(BadInput, match="flow run id"):
        writer.write_batch("../x", "b", events)
    with pytest.raises(BadInput, match="w9"):
        writer.write_availability(
            "w1",
            [
                WorkerAvailability(
                    worker_id="w9", device_class="cpu", up_from=at("10:00:00"), up_to=at("11:00:00")
                )
            ],
        )


# -- the marts, against numbers worked out by hand ------------------------------------------


def test_ingest_rejects_the_unverifiable_record_and_loads_the_rest(floor):
    _, warehouse = floor
    counts = warehouse.counts()
    # 22 events: the failure event written twice counts once.
    assert counts["raw_events"] == 22
    assert counts["raw_availability"] == 4
    assert counts["raw_lineage"] == 7
    assert counts["raw_lineage_parents"] == 6
    (rejected,) = rows(warehouse, "select * from rejected_objects")
    assert rejected["uri"].endswith(f"{digest_of('DB')}.dsse.json")
    assert "untrusted key" in rejected["reason"]
    assert counts["ingested_objects"] == 15


def test_ingest_is_idempotent(tmp_path):
    store = LocalStore(tmp_path / "store")
    populate(store, tmp_path / "keys")
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    anchor = local_anchor(tmp_path / "keys")
    first = warehouse.ingest(store, anchor, batch_objects=3)
    before = warehouse.counts()
    marts_before = rows(warehouse, "select * from cost_per_delivered_minute order by all")
    second = warehouse.ingest(store, anchor)
    assert first.added == {
        "raw_events": 22,
        "raw_availability": 4,
        "raw_lineage": 7,
        "raw_lineage_parents": 6,
    }
    assert second.loaded == {"events": 0, "availability": 0, "lineage": 0}
    assert set(second.added.values()) == {0}
    assert len(first.rejected) == len(second.rejected) == 1  # reported every time
    assert warehouse.counts() == before
    assert rows(warehouse, "select * from cost_per_delivered_minute order by all") == marts_before
    # The same objects under new names (say, copied to another prefix) add no rows either.
    for key in list_event_keys(store):
        store.put(key.replace("/final.jsonl", "/copy.jsonl"), store.get(key))
    third = warehouse.ingest(store, anchor)
    assert third.loaded["events"] == 3 and warehouse.counts()["raw_events"] == 22


def test_a_malformed_events_object_is_reported_not_loaded(tmp_path):
    store = LocalStore(tmp_path / "store")
    EventWriter(store).write_batch("f", "good", [make_event(EVENTS[0])])
    store.put(
        "floor/events/f/bad.jsonl", make_event(EVENTS[1]).model_dump_json().encode() + b"\n{oops\n"
    )
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    report = warehouse.ingest(store, TrustAnchor("0" * 64))
    (bad,) = report.rejected
    assert "bad.jsonl line 2" in bad.reason
    assert warehouse.counts()["raw_events"] == 1


def test_cost_per_delivered_minute(floor):
    _, warehouse = floor
    got = {
        (r["order_id"], r["model"], r["device_class"]): r
        for r in rows(warehouse, "select * from cost_per_delivered_minute")
    }
    # Order A on gpu-h100 at 0.001/s; 2 delivered minutes.
    #   wan-a: events 1,2,3,4,12,13,14 = 30+60+6+12+1 = 109 s; waste: the retry (30 s)
    #   wan-b: 5..11 and 15..17 = 60+6+12+2 + 60+6+12 + 12 = 170 s; waste: the rejected
    #          pass (80 s) and the failed pass (78 s) = 158 s
    #   assemble (order-level): 6 s
    #   D's renders: R0 (wan-a, 90 s) and R1b (wan-b, 30 s): 1.5 and 0.5 of its 2 minutes.
    # Order B: wan-b on cpu at 0.0001/s: 0+4+8 = 12 s; assemble on "mystery" at the
    #   default 0.0005/s: 2 s; 1 delivered minute without verified lineage, so it goes
    #   by B's accepted segments: its one segment, wan-b.
    expected = {  # device s, cost, waste s, delivered minutes, cost per delivered minute
        ("A", "wan-a", GPU): (109, 0.109, 30, 1.5, 0.109 / 1.5),
        ("A", "wan-b", GPU): (170, 0.170, 158, 0.5, 0.34),
        ("A", "(order)", GPU): (6, 0.006, 0, 0, None),
        ("B", "wan-b", "cpu"): (12, 0.0012, 0, 1.0, 0.0012),
        ("B", "(order)", "mystery"): (2, 0.001, 0, 0, None),
    }
    assert set(got) == set(expected)
    for key, (seconds, cost, waste, minutes, per_minute) in expected.items():
        row = got[key]
        assert row["device_seconds"] == pytest.approx(seconds)
        assert row["cost"] == pytest.approx(cost)
        assert row["waste_device_seconds"] == pytest.approx(waste)
        assert row["delivered_minutes"] == pytest.approx(minutes)
        assert row["cost_per_delivered_minute"] == (
            None if per_minute is None else pytest.approx(per_minute)
        )
        assert row["day"].isoformat() == DAY and row["currency"] == "USD"
    # An order's cost per delivered minute: its rows' cost over its rows' minutes.
    a = [r for k, r in got.items() if k[0] == "A"]
    assert sum(r["cost"] for r in a) / sum(r["delivered_minutes"] for r in a) == (
        pytest.approx(0.1425)
    )
    s = summary(warehouse)
    # (0.285 + 0.0022) / 3 minutes
    assert s.cost_per_delivered_minute == pytest.approx(0.2872 / 3)
    assert (s.delivered_minutes, s.delivered_orders) == (pytest.approx(3.0), 2)
    assert s.daily == [
        {
            "day": DAY,
            "cost": pytest.approx(0.2872),
            "delivered_minutes": pytest.approx(3.0),
            "cost_per_delivered_minute": pytest.approx(0.2872 / 3),
        }
    ]


# -- re-deliveries: the day-two fixture ------------------------------------------------------


def test_a_redelivery_adds_no_minutes_and_no_royalties(refloor):
    # A delivery is keyed by order id and deliverable digest; its first hand-over counts.
    got = {
        (r["order_id"], r["deliverable_digest"]): r
        for r in rows(refloor, "select * from int_deliveries")
    }
    assert {k: (v["day"].isoformat(), v["delivered_minutes"], v["handovers"]) for k, v in
            got.items()} == {
        ("A", digest_of("D")): (DAY, 2.0, 2),  # fa2 delivered it, fa3 re-delivered it
        ("B", digest_of("DB")): (DAY, 1.0, 1),
        ("C", digest_of("D")): (DAY2, 2.0, 1),  # the same bytes, a new order: counts
    }  # fmt: skip
    assert got[("A", digest_of("D"))]["delivery_event_id"] == f"{18:032x}"
    # Minutes per order over the cost mart: A 2 (not 4), B 1, C 2.
    minutes = rows(
        refloor,
        "select order_id, sum(delivered_minutes) as minutes from cost_per_delivered_minute "
        "group by order_id order by order_id",
    )
    assert [(r["order_id"], r["minutes"]) for r in minutes] == [
        ("A", pytest.approx(2.0)),
        ("B", pytest.approx(1.0)),
        ("C", pytest.approx(2.0)),
    ]
    # Royalties: D's 2 minutes once for A (day one) and once for C (day two), each
    # studio-x 0.9 min (0.45), lab-y 0.6 + 0.5 min (0.30 + 0.25): 1.00 a delivery.
    owed = {
        (r["day"].isoformat(), r["holder"], r["model"]): (r["delivered_minutes"], r["royalty"])
        for r in rows(refloor, "select * from royalties where holder is not null")
    }
    per_delivery = {("studio-x", "wan-a"): 0.45, ("lab-y", "wan-a"): 0.30, ("lab-y", "wan-b"): 0.25}
    assert set(owed) == {(day, *key) for day in (DAY, DAY2) for key in per_delivery}
    for (_, holder, model), (minutes, royalty) in owed.items():
        assert royalty == pytest.approx(per_delivery[(holder, model)])
        assert minutes == pytest.approx(royalty / 0.5)
    s = summary(refloor)
    assert (s.delivered_minutes, s.delivered_orders) == (pytest.approx(5.0), 3)
    assert s.royalties_owed == pytest.approx(2.0) and s.unattributed_minutes == pytest.approx(1)


def test_the_cost_mart_adds_up_on_the_day_the_work_happened(refloor):
    got = {
        (r["day"].isoformat(), r["order_id"], r["model"], r["device_class"]): r
        for r in rows(refloor, "select * from cost_per_delivered_minute")
    }
    # Day one as in test_cost_per_delivered_minute. Day two: fa3 (A's rerun) and fc
    # (order C) each spent 1 s per render lookup at 0.001/s, 0 s elsewhere; only C's
    # hand-over is a delivery (wan-a 1.5 min, wan-b 0.5 min).
    expected = {  # events, device s, cost, delivered minutes
        (DAY, "A", "wan-a", GPU): (7, 109, 0.109, 1.5),
        (DAY, "A", "wan-b", GPU): (10, 170, 0.170, 0.5),
        (DAY, "A", "(order)", GPU): (1, 6, 0.006, 0),
        (DAY, "B", "wan-b", "cpu"): (3, 12, 0.0012, 1.0),
        (DAY, "B", "(order)", "mystery"): (1, 2, 0.001, 0),
        (DAY2, "A", "wan-a", GPU): (3, 1, 0.001, 0),
        (DAY2, "A", "wan-b", GPU): (3, 1, 0.001, 0),
        (DAY2, "A", "(order)", GPU): (1, 0, 0, 0),
        (DAY2, "C", "wan-a", GPU): (3, 1, 0.001, 1.5),
        (DAY2, "C", "wan-b", GPU): (3, 1, 0.001, 0.5),
        (DAY2, "C", "(order)", GPU): (1, 0, 0, 0),
    }
    assert set(got) == set(expected)
    for key, (events, seconds, cost, minutes) in expected.items():
        row = got[key]
        assert (row["events"], row["device_seconds"]) == (events, pytest.approx(seconds))
        assert row["cost"] == pytest.approx(cost)
        assert row["delivered_minutes"] == pytest.approx(minutes)
    # The first query an analyst writes: total minutes, and minutes and cost per model.
    totals = rows(
        refloor,
        "select model, sum(delivered_minutes) as minutes, sum(cost) as cost "
        "from cost_per_delivered_minute group by rollup (model) order by model nulls last",
    )
    assert [(r["model"], r["minutes"], r["cost"]) for r in totals] == [
        ("(order)", pytest.approx(0), pytest.approx(0.007)),
        ("wan-a", pytest.approx(3.0), pytest.approx(0.111)),
        ("wan-b", pytest.approx(2.0), pytest.approx(0.1732)),
        (None, pytest.approx(5.0), pytest.approx(0.2912)),
    ]
    # Per day: day one 0.2872 for 3 minutes, day two 0.004 for C's 2 minutes.
    assert summary(refloor).daily == [
        {"day": DAY, "cost": pytest.approx(0.2872), "delivered_minutes": pytest.approx(3.0),
         "cost_per_delivered_minute": pytest.approx(0.2872 / 3)},
        {"day": DAY2, "cost": pytest.approx(0.004), "delivered_minutes": pytest.approx(2.0),
         "cost_per_delivered_minute": pytest.approx(0.002)},
    ]  # fmt: skip


GRAIN = tomllib.loads((Path(__file__).parent.parent / "storage" / "sql" / "grain.toml").read_text())


@pytest.mark.parametrize("model", sorted(GRAIN))
def test_model_grain_and_sums(refloor, model):
    # dbt-style tests declared beside the SQL (storage/sql/grain.toml): the grain is
    # unique and not null, the listed columns are not null, the listed values are the
    # only ones, and each additive column sums to its source's total.
    spec = GRAIN[model]
    grain = ", ".join(spec["grain"])
    with refloor.connect() as con:
        assert con.execute(f"select count(*) from {model}").fetchone()[0] > 0
        duplicates = con.execute(
            f"select {grain}, count(*) from {model} group by all having count(*) > 1"
        ).fetchall()
        assert duplicates == [], f"{model}: grain ({grain}) is not unique"
        nullable = spec.get("nullable", [])
        for column in [*(c for c in spec["grain"] if c not in nullable), *spec.get("not_null", [])]:
            nulls = con.execute(f"select count(*) from {model} where {column} is null").fetchone()
            assert nulls == (0,), f"{model}.{column} has nulls"
        for column, accepted in spec.get("accepted_values", {}).items():
            values = {
                v
                for (v,) in con.execute(
                    f"select distinct {column} from {model} where {column} is not null"
                ).fetchall()
            }
            assert values <= set(accepted), f"{model}.{column}: {values - set(accepted)}"
        for column, source in spec.get("sums", {}).items():
            total = con.execute(f"select sum({column}) from {model}").fetchone()[0]
            assert total == pytest.approx(con.execute(source).fetchone()[0]), f"{model}.{column}"


def test_yield(floor):
    _, warehouse = floor
    got = {r["model"]: r for r in rows(warehouse, "select * from yield")}
    # wan-a: segment A0. Pass 1 (events 1-4: accepted, but with a retry), pass 2 (fa2's
    #   cache hits: accepted). 2 of 2 accepted; first pass not clean -> FPY 0/1.
    # wan-b: segment A1: pass 1 rejected (5-8), pass 2 failed (9-11), pass 3 accepted
    #   (15-17); segment B0: pass 1 accepted clean (19-21). 2 of 4; FPY 1/2.
    assert got["wan-a"] == {
        "day": got["wan-a"]["day"],
        "model": "wan-a",
        "segments": 1,
        "attempted_passes": 2,
        "accepted_passes": 2,
        "rejected_passes": 0,
        "failed_passes": 0,
        "incomplete_passes": 0,
        "first_pass_accepted": 0,
        "yield": 1.0,
        "first_pass_yield": 0.0,
        "attempted_device_seconds": pytest.approx(109),
        "accepted_device_seconds": pytest.approx(109),
        "device_seconds_yield": pytest.approx(1.0),
    }
    b = got["wan-b"]
    assert (b["segments"], b["attempted_passes"], b["accepted_passes"]) == (2, 4, 2)
    assert (b["rejected_passes"], b["failed_passes"], b["first_pass_accepted"]) == (1, 1, 1)
    assert b["yield"] == 0.5 and b["first_pass_yield"] == 0.5
    # attempted 80 + 78 + 12 + 12 = 182 s, accepted 12 + 12 = 24 s
    assert b["attempted_device_seconds"] == pytest.approx(182)
    assert b["device_seconds_yield"] == pytest.approx(24 / 182)
    s = summary(warehouse)
    assert s.yield_ == pytest.approx(4 / 6) and s.first_pass_yield == pytest.approx(1 / 3)


def test_utilization_counts_idle_time(floor):
    _, warehouse = floor
    got = {
        (r["worker_id"], r["hour"].hour): r for r in rows(warehouse, "select * from utilization")
    }
    # w1 (merged 10:00-12:00): hour 10 busy 266 s (events 1-11), hour 11 busy 19 s.
    # w2 (10:30-11:30): hour 10: 0 + 4 + half of event 21 (4) = 8 s of 1800; hour 11: the
    #   other half (4) + assemble (2) = 6 s of 1800. w3: available, never busy.
    expected = {
        (W1, 10): (3600, 266),
        (W1, 11): (3600, 19),
        (W2, 10): (1800, 8),
        (W2, 11): (1800, 6),
        (W3, 10): (3600, 0),
    }
    assert set(got) == set(expected)
    for key, (available, busy) in expected.items():
        row = got[key]
        assert row["available_seconds"] == pytest.approx(available)
        assert row["busy_seconds"] == pytest.approx(busy)
        assert row["idle_seconds"] == pytest.approx(available - busy)
        assert row["utilization"] == pytest.approx(busy / available)
    assert got[(W3, 10)]["device_class"] == "cpu" and got[(W1, 10)]["device_class"] == GPU
    # overall: (266 + 19 + 8 + 6) / (7200 + 3600 + 3600)
    assert summary(warehouse).utilization == pytest.approx(299 / 14400)


def test_cache_savings(floor):
    _, warehouse = floor
    got = {(r["stage"], r["model"]): r for r in rows(warehouse, "select * from cache_savings")}
    # Hits 12 (R0), 13 (C0), 14 (E0), 15 (R1b), 16 (C1b) resolve through their lineage
    # records; hit 19 reuses R1, which has no record: event 5 (60 s) is its original.
    # Every original ran on gpu-h100 (0.001/s).
    expected = {  # hits, computed, avoided seconds, hit seconds, from lineage, from events
        ("render", "wan-a"): (1, 1, 60, 1, 1, 0),
        ("render", "wan-b"): (2, 2, 120, 0, 1, 1),
        ("composite", "wan-a"): (1, 1, 6, 0, 1, 0),
        ("composite", "wan-b"): (1, 3, 6, 0, 1, 0),
        ("encode", "wan-a"): (1, 1, 12, 0, 1, 0),
        ("encode", "wan-b"): (0, 3, 0, 0, 0, 0),
        ("assemble", "(order)"): (0, 2, 0, 0, 0, 0),
    }
    assert set(got) == set(expected)
    for key, (hits, computed, avoided, hit_seconds, lineage, events) in expected.items():
        row = got[key]
        assert (row["hits"], row["computed"]) == (hits, computed)
        assert row["hit_rate"] == pytest.approx(hits / (hits + computed))
        assert row["avoided_device_seconds"] == pytest.approx(avoided)
        assert row["avoided_cost"] == pytest.approx(avoided * 0.001)
        assert row["hit_device_seconds"] == pytest.approx(hit_seconds)
        assert row["net_saved"] == pytest.approx((avoided - hit_seconds) * 0.001)
        assert (row["resolved_from_lineage"], row["resolved_from_events"]) == (lineage, events)
        assert row["unresolved_hits"] == 0
    s = summary(warehouse)
    assert s.cache_hits == 6 and s.avoided_cost == pytest.approx(0.204)
    assert s.net_saved == pytest.approx(0.203)


def test_royalties_split_across_two_rights_holders(floor):
    _, warehouse = floor
    got = {(r["holder"], r["model"]): r for r in rows(warehouse, "select * from royalties")}
    # D's renders: R0 (wan-a, 1440/16 = 90 s) and R1b (wan-b, 480/16 = 30 s), so of its 2
    # delivered minutes wan-a gets 1.5 and wan-b 0.5. wan-a routes 60 % to studio-x and
    # 40 % to lab-y, wan-b 100 % to lab-y. At 0.50 per minute:
    #   studio-x 0.9 min -> 0.45; lab-y 0.6 + 0.5 min -> 0.30 + 0.25.
    # B's minute has no verified lineage (its record was forged): owed, holder unknown.
    expected = {
        ("studio-x", "wan-a"): (0.9, 0.45),
        ("lab-y", "wan-a"): (0.6, 0.30),
        ("lab-y", "wan-b"): (0.5, 0.25),
        (None, None): (1.0, None),
    }
    assert set(got) == set(expected)
    for key, (minutes, royalty) in expected.items():
        assert got[key]["delivered_minutes"] == pytest.approx(minutes)
        assert got[key]["royalty"] == (None if royalty is None else pytest.approx(royalty))
    assert got[("studio-x", "wan-a")]["training_sources"] == [
        "stock footage library A",
        "public-domain film archive",
    ]
    by_holder = {r["holder"]: r["royalty"] for r in summary(warehouse).royalties_by_holder}
    assert by_holder == {
        "lab-y": pytest.approx(0.55),
        "studio-x": pytest.approx(0.45),
        "(no verified lineage)": None,
    }


def p(values: list[float], q: float) -> float:
    """quantile_cont by hand: linear interpolation at position q * (n - 1)."""
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (position - low) * (values[high] - values[low])


def test_stage_latency_against_the_budget(floor):
    _, warehouse = floor
    got = {r["stage"]: r for r in rows(warehouse, "select * from stage_latency")}
    # Walls in seconds of the attempts that computed an answer (completed, rejected);
    # cache hits computed nothing and are counted apart; failed/retried are left out.
    walls = {
        "render": [62, 61, 63],  # p50 = 62 s, p95 = 62 + 0.9 * 1 = 62.9 s
        "composite": [7, 8, 6, 5],  # p50 = 6.5 s, p95 = 7 + 0.85 * 1 = 7.85 s
        "encode": [13, 14, 13, 8],  # p50 = 13 s, p95 = 13 + 0.85 * 1 = 13.85 s
        "gate": [2],
        "assemble": [7, 2],  # p50 = 4.5 s, p95 = 6.75 s
        "end_to_end": [27, 1212],  # fa2 11:00:00-11:00:27, fb 10:40:00-11:00:12
    }
    hand = {
        "render": (62_000, 62_900),
        "composite": (6_500, 7_850),
        "encode": (13_000, 13_850),
        "gate": (2_000, 2_000),
        "assemble": (4_500, 6_750),
        "end_to_end": (619_500, 1_152_750),
    }
    # Cache hits: renders 12, 15, 19 (1 s each), composites 13, 16 and encode 14 (0.5 s).
    hits = {"render": (3, 1_000), "composite": (2, 500), "encode": (1, 500)}
    budget = {**BUDGET.stages, "end_to_end": BUDGET.end_to_end_ms}
    within = {"render": True, "composite": True, "encode": True, "gate": False,
              "assemble": True, "end_to_end": False}  # fmt: skip
    over_share = {"gate": 1.0, "end_to_end": 0.5}
    assert set(got) == set(walls)
    for stage, seconds in walls.items():
        row = got[stage]
        ms = [s * 1000 for s in seconds]
        assert (row["p50_ms"], row["p95_ms"]) == (
            pytest.approx(p(ms, 0.5)),
            pytest.approx(p(ms, 0.95)),
        )
        assert (row["p50_ms"], row["p95_ms"]) == (
            pytest.approx(hand[stage][0]),
            pytest.approx(hand[stage][1]),
        )
        assert row["attempts"] == len(seconds)
        assert (row["cache_hits"], row["cache_hit_p50_ms"]) == hits.get(stage, (0, None))
        assert row["budget_p95_ms"] == budget[stage]
        assert row["within_budget"] is within[stage]
        assert row["over_budget_share"] == pytest.approx(over_share.get(stage, 0.0))


# -- ancestry, report, export -----------------------------------------------------------------


def test_ancestry_matches_the_store_walk(floor):
    store, warehouse = floor
    deliverable = digest_of("D")
    from_warehouse = warehouse.ancestry(deliverable)
    anchor = local_anchor(Path(store.url).parent / "keys")
    from_store = store_ancestry(store, load_trusted_keys(store, anchor), deliverable)
    assert from_warehouse.model_dump() == from_store.model_dump()
    assert from_warehouse.rendered_seconds == 120
    edges = warehouse.ancestry_edges(deliverable)
    assert {(row[2], row[3]) for row in edges} == {
        (digest_of("E0"), 1),
        (digest_of("E1b"), 1),
        (digest_of("C0"), 2),
        (digest_of("C1b"), 2),
        (digest_of("R0"), 3),
        (digest_of("R1b"), 3),
    }
    assert warehouse.lookup(digest_of("R0"))["model_name"] == "wan-a"
    assert warehouse.lookup(digest_of("DB")) is None
    with pytest.raises(IntegrityError, match="no verified record for its own record"):
        warehouse.ancestry(digest_of("DB"))
    with pytest.raises(BadInput, match="not an asset digest"):
        warehouse.ancestry("' or 1=1 --")


def test_summary_markdown(floor):
    _, warehouse = floor
    text = summary(warehouse).markdown()
    assert "| cost per delivered minute | 0.0957 USD |" in text
    assert "| yield (first pass) | 66.7% (33.3%) |" in text
    assert "| gate | 2,000 ms | 2,000 ms | 1,000 ms | ❌ |" in text
    assert "| studio-x | 0.900 | 0.4500 USD |" in text
    assert "| objects rejected at ingest | 1 |" in text


def test_the_analysts_readme_shows_real_output(refloor, tmp_path, monkeypatch, capsys):
    # storage/sql/README.md's example queries run against the re-delivery fixture, on
    # the lake, on its Parquet export (at ./floor-export, as the README makes it) and on
    # its single-file DuckDB export, and each shows its output: the output must be what
    # the query gives now, on all three. FLOOR_README_WRITE=1 writes the lake's output
    # into the README instead.
    path = Path(__file__).parent.parent / "storage" / "sql" / "README.md"
    text = path.read_text()
    blocks = list(re.finditer(r"```(\w*)\n(.*?)```", text, re.S))
    examples = [
        (query, shown)
        for query, shown in itertools.pairwise(blocks)
        if (query.group(1), shown.group(1)) == ("sql", "text")
        and not text[query.end() : shown.start()].strip()
    ]
    assert len(examples) >= 13
    refloor.export(tmp_path / "floor-export")
    monkeypatch.chdir(tmp_path)

    def same(table: str) -> str:  # the forged record's signing key is new every run
        return re.sub(r"untrusted key [0-9a-f]+", "untrusted key …", table).strip()

    def output(con: duckdb.DuckDBPyConnection, query: str) -> str:
        con.sql(query).show(max_width=10_000, max_col_width=10_000)
        return capsys.readouterr().out

    with refloor.connect() as con:
        got = [output(con, query.group(2)) for query, _ in examples]
    if os.environ.get("FLOOR_README_WRITE"):
        for (_, shown), out in reversed(list(zip(examples, got, strict=True))):
            text = text[: shown.start(2)] + out.strip() + "\n" + text[shown.end(2) :]
        path.write_text(text)
    for (query, shown), out in zip(examples, got, strict=True):
        assert same(out) == same(shown.group(2)), query.group(2)
    exported = connect_export(tmp_path / "floor-export")
    for query, shown in examples:
        assert same(output(exported, query.group(2))) == same(shown.group(2)), query.group(2)
    refloor.export_duckdb(tmp_path / "floor.duckdb")
    with duckdb.connect(str(tmp_path / "floor.duckdb"), read_only=True) as single:
        for query, shown in examples:
            assert same(output(single, query.group(2))) == same(shown.group(2)), query.group(2)


def test_two_ingests_in_one_process_take_turns(tmp_path):
    # Two flows of one process closing their books at once: both ingests finish, and
    # each row is in once.
    store = LocalStore(tmp_path / "store")
    populate(store, tmp_path / "keys")
    anchor = local_anchor(tmp_path / "keys")
    for round_ in range(3):
        warehouse = Warehouse(
            tmp_path / f"w{round_}.sqlite", price_card=PRICES, latency_budget=BUDGET
        )
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = [pool.submit(warehouse.ingest, store, anchor, batch_objects=2) for _ in range(2)]
            reports = [run.result() for run in runs]
        assert [len(report.rejected) for report in reports] == [1, 1]
        counts = warehouse.counts()
        assert (counts["raw_events"], counts["raw_lineage"], counts["ingested_objects"]) == (
            22,
            7,
            15,
        )


def test_missing_warehouse_says_to_ingest(tmp_path):
    with pytest.raises(WarehouseMissing, match="factory floor ingest"):
        Warehouse(tmp_path / "nope.sqlite").query("select 1")


def test_duckdb_export_is_one_file_with_every_table_and_view(floor, tmp_path):
    _, warehouse = floor
    report = warehouse.export_duckdb(tmp_path / "copy.duckdb")
    assert report.tables["raw_events"] == 22 and report.tables["rejected_objects"] == 1
    assert not list(tmp_path.glob(".*partial"))
    with duckdb.connect(str(tmp_path / "copy.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from yield").fetchone() == (2,)
        # The lineage indexes a DuckLake table cannot have, for ancestry at index speed.
        indexes = {
            name for (name,) in con.execute("select index_name from duckdb_indexes()").fetchall()
        }
        assert "raw_lineage_parents_child" in indexes
    with pytest.raises(BadInput, match=r"\.duckdb"):
        warehouse.export_duckdb(tmp_path / "copy.db")


@pytest.mark.s3
def test_ingest_and_export_on_s3(s3_env, tmp_path):
    from storage.open import open_store

    bucket = s3_env.make_bucket()
    store = open_store(f"s3://{bucket}/factory")
    populate(store, tmp_path / "keys")
    warehouse = Warehouse(tmp_path / "s3.sqlite", price_card=PRICES, latency_budget=BUDGET)
    anchor = local_anchor(tmp_path / "keys")
    report = warehouse.ingest(store, anchor)
    assert report.loaded == {"events": 4, "availability": 4, "lineage": 7}
    assert len(report.rejected) == 1
    assert warehouse.counts()["raw_events"] == 22
    assert set(warehouse.ingest(store, anchor).loaded.values()) == {0}
    # Parquet straight to the bucket through DuckDB's httpfs, and read back the same way.
    exported = warehouse.export(f"s3://{bucket}/exports/floor")
    assert exported.tables["cost_per_delivered_minute"] == 5
    names = {obj["Key"] for obj in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert "exports/floor/yield.parquet" in names and "exports/floor/_manifest.json" in names
    con = connect_export(f"s3://{bucket}/exports/floor")
    assert con.execute("select sum(royalty) from royalties").fetchone()[0] == pytest.approx(1.0)
    assert con.execute("select count(*) from events").fetchone() == (22,)


def test_cli_ingest_report_export(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.floor import floor_app

    store = LocalStore(tmp_path / "store")
    populate(store, tmp_path / "keys")
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACTORY_TRUST", f"sha256:{keys.root_fingerprint(tmp_path / 'keys')}")
    runner = CliRunner()
    missing = runner.invoke(floor_app, ["report"])
    assert missing.exit_code == 1 and "factory floor ingest" in missing.output
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'currency = "USD"\nroyalty_per_delivered_minute = 0.5\n'
        '[device_hour]\ndefault = 1.8\n"gpu-h100" = 3.6\ncpu = 0.36\n'
    )
    budget = tmp_path / "budget.toml"
    budget.write_text(
        "end_to_end_ms = 120000\n[stages]\nrender = 65000\ncomposite = 8000\nencode = 15000\n"
        "gate = 1000\nassemble = 10000\n"
    )
    ingest = runner.invoke(
        floor_app,
        ["ingest", "--store", str(tmp_path / "store"), "--price-card", str(prices),
         "--latency-budget", str(budget)],
    )  # fmt: skip
    # One forged record: everything else is loaded, and the exit status says so.
    assert ingest.exit_code == 1, ingest.output
    assert "rejected" in ingest.output and "untrusted key" in ingest.output
    assert (tmp_path / "home" / "floor" / "catalog.sqlite").is_file()
    report = runner.invoke(floor_app, ["report"])
    assert report.exit_code == 0, report.output
    assert "cost per delivered minute" in report.output
    html = (tmp_path / "home" / "floor" / "floor.html").read_text()
    assert html.count("<svg") >= 4 and "0.0957" in html and "<script" not in html
    # The same for scripts: every number as JSON, the report's path beside them.
    as_json = runner.invoke(floor_app, ["report", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["html"] == str(tmp_path / "home" / "floor" / "floor.html")
    assert data["cost_per_delivered_minute"] == pytest.approx(0.0957, abs=5e-5)
    assert {"yield", "daily", "yield_by_model", "latency"} <= data.keys()
    again = runner.invoke(floor_app, ["ingest", "--store", str(tmp_path / "store"), "--json"])
    assert again.exit_code == 1  # the forged record is still refused
    loaded = json.loads(again.stdout)
    assert set(loaded["loaded"].values()) == {0} and len(loaded["rejected"]) == 1
    export = runner.invoke(
        floor_app, ["export", "--to", str(tmp_path / "pq"), "--duckdb", str(tmp_path / "f.duckdb")]
    )
    assert export.exit_code == 0, export.output
    assert (tmp_path / "pq" / "cost_per_delivered_minute.parquet").is_file()
    with duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw_events").fetchone() == (22,)
    nowhere = runner.invoke(floor_app, ["export"])
    assert nowhere.exit_code == 2 and "--duckdb FILE" in nowhere.output


def test_html_report_escapes_what_the_store_says(floor):
    from cli.report import render_html

    _, warehouse = floor
    s = summary(warehouse)
    hostile = "<script>alert(1)</script>"
    s = s.model_copy(
        update={
            "royalties_by_holder": [{**s.royalties_by_holder[0], "holder": hostile}],
            "utilization_by_worker": [{**s.utilization_by_worker[0], "worker_id": hostile}],
        }
    )
    page = render_html(s)
    # In two tables (Jinja2 autoescape) and in a chart's labels (matplotlib's SVG).
    assert "<script" not in page and page.count("&lt;script&gt;") == 3
    assert page.count("<svg") == 5
