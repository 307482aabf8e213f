"""End to end: a produced order lands in the floor warehouse with its real duration and cost."""

import socket
from pathlib import Path

import pytest

from factory.orders import load_order
from flows.produce import produce
from storage.ancestry import ancestry
from storage.local import LocalStore
from storage.trust import local_anchor
from storage.warehouse import Warehouse
from tests.trusted import local_trust

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_produced_order_is_in_the_warehouse(flow_env, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FACTORY_HOME", str(home))
    monkeypatch.setenv("FACTORY_WORKER_NAME", "render-node-1")
    order = load_order(EXAMPLES / "tiny.yaml")
    delivery = produce(order, str(tmp_path / "store"))

    warehouse = Warehouse(home / "floor" / "catalog.sqlite")
    minutes_sql = "select sum(delivered_minutes) from cost_per_delivered_minute where order_id = ?"
    _, rows = warehouse.query(minutes_sql, [order.id])
    assert rows[0][0] == pytest.approx(delivery.duration_s / 60)
    _, rows = warehouse.query(
        "select sum(cost) from cost_per_delivered_minute where order_id = ?", [order.id]
    )
    assert rows[0][0] > 0
    _, rows = warehouse.query(
        "select count(*) from stg_events where flow_run_id = ?", [delivery.flow_run_id]
    )
    assert rows[0][0] == len(delivery.runs)
    # The worker is named by host and configured name, the same on every run of it.
    worker = f"{socket.gethostname()}:render-node-1"
    for table in ("stg_events", "stg_availability"):
        _, rows = warehouse.query(f"select distinct worker_id from {table}")
        assert rows == [(worker,)]

    stored = LocalStore(tmp_path / "store")
    from_store = ancestry(stored, local_trust(stored), delivery.deliverable.digest)
    assert warehouse.ancestry(delivery.deliverable.digest) == from_store

    # A warm run computes nothing: its cache hits wait in the store, and its floor
    # artifact says so, until the next ingest loads them.
    _, before = warehouse.query("select count(*) from stg_events")
    warm = produce(order, str(tmp_path / "store"))
    assert warehouse.query("select count(*) from stg_events")[1] == before
    assert "**Not ingested**" in _floor_artifact(warm.flow_run_id)
    anchor = local_anchor(flow_env / "keys")
    assert warehouse.ingest(stored, anchor).added["raw_events"] == len(delivery.runs)
    # Re-ingesting changes nothing.
    assert sum(warehouse.ingest(stored, anchor).added.values()) == 0
    _, hits = warehouse.query("select count(*) from stg_events where cache_hit")
    assert hits[0][0] == len(delivery.runs)
    # FACTORY_INGEST_CACHED_RUNS: a warm run is in the warehouse when it ends.
    monkeypatch.setenv("FACTORY_INGEST_CACHED_RUNS", "true")
    again = produce(order, str(tmp_path / "store"))
    _, hits = warehouse.query("select count(*) from stg_events where cache_hit")
    assert hits[0][0] == 2 * len(delivery.runs)
    assert "**Not ingested**" not in _floor_artifact(again.flow_run_id)
    # The warm runs handed the same deliverable over again: re-deliveries, which add no
    # minutes and no royalties.
    _, rows = warehouse.query(
        "select handovers, redeliveries from int_deliveries where order_id = ?", [order.id]
    )
    assert rows == [(3, 2)]
    _, rows = warehouse.query(minutes_sql, [order.id])
    assert rows[0][0] == pytest.approx(delivery.duration_s / 60)
    _, rows = warehouse.query("select sum(delivered_minutes) from royalties")
    assert rows[0][0] == pytest.approx(delivery.duration_s / 60)


def _floor_artifact(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    [floor] = [a for a in artifacts if a.key == "factory-floor"]
    return floor.data


def test_a_failed_end_of_run_ingest_is_logged_and_shown_in_the_floor_artifact(
    flow_env, tmp_path, monkeypatch, caplog
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # A catalog that cannot be created: its folder is a file.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FACTORY_WAREHOUSE_CATALOG", f"sqlite:{blocker}/catalog.sqlite")
    delivery = produce(load_order(EXAMPLES / "tiny.yaml"), str(tmp_path / "store"))

    assert delivery.verified  # the run's work stands; only the warehouse is behind
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[delivery.flow_run_id]))
        )
    [floor] = [a for a in artifacts if a.key == "factory-floor"]
    assert "**Ingest failed**" in floor.data and "factory floor ingest" in floor.data
    assert any(
        "floor ingest into" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )
