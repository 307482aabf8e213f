"""The upkeep flows behind the floor-report and cache-gc deployments, run as Prefect flows."""

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import ParameterTypeError

from factory.orders import load_order
from flows.maintenance import cache_gc, floor_report
from flows.produce import produce
from storage.cache import SegmentCache
from storage.local import LocalStore
from tasks.maintenance import CACHE_GC_KEY, FLOOR_REPORT_KEY

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


def _artifact(state, key: str) -> str:
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    [artifact] = [a for a in artifacts if a.key == key]
    return artifact.data


def test_floor_report_and_cache_gc_do_what_their_commands_do(flow_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACTORY_STORE", str(tmp_path / "store"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(flow_env / "models")
    order = load_order(EXAMPLES / "tiny.yaml")
    delivery = produce(order, floor=False)  # nothing in the warehouse yet

    state = floor_report(return_state=True)
    report = state.result()
    assert report.delivered_orders == 1
    assert report.delivered_minutes == pytest.approx(delivery.duration_s / 60)
    published = _artifact(state, FLOOR_REPORT_KEY)
    assert "delivered" in published.lower() and "Data files compacted" in published

    store = LocalStore(tmp_path / "store")
    entries = len(list(SegmentCache(store).entries()))
    assert entries > 0
    state = cache_gc(older_than_days=1e-9, dry_run=True, return_state=True)
    assert state.result().entries_removed == entries
    assert "would remove" in _artifact(state, CACHE_GC_KEY)
    assert len(list(SegmentCache(store).entries())) == entries  # a dry run changes nothing

    result = cache_gc(older_than_days=1e-9)
    assert result.entries_removed == entries and result.assets_kept_for_deliverables > 0
    assert list(SegmentCache(store).entries()) == []
    assert store.head(f"assets/sha256/{delivery.deliverable.digest[:2]}/"
                      f"{delivery.deliverable.digest}")  # fmt: skip

    with pytest.raises(ParameterTypeError, match="older_than_days"):
        cache_gc(older_than_days=0)
