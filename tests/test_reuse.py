"""The reuse pass on its own, without Prefect: each segment's chain as far as the cache reaches."""

import dataclasses

from bench.orchestration_overhead import plain
from factory.errors import StoreUnavailable
from factory.orders import Order
from factory.settings import Settings
from storage.floor_events import list_event_keys
from storage.local import LocalStore
from tasks.prepare import Production, check_order, prepare
from tasks.provenance import RunContext
from tasks.resources import Resources, open_resources
from tasks.reuse import reuse_cached_stages
from tests.run_index import run_reuses
from tests.test_cache import _order


def _prepared(order: Order, store: str, run: str) -> tuple[Resources, Production, RunContext]:
    context = RunContext(order_id=order.id, flow_run_id=run)
    settings = Settings()
    resources = open_resources(settings, "cpu", store)
    models = check_order(order, resources.registry, settings.models_dir)
    return resources, prepare(order, resources, models, context), context


def test_reuse_pass_follows_each_chain_as_far_as_the_cache_reaches(
    factory_home, monkeypatch, tmp_path
):
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    store = str(tmp_path / "store")
    order = _order()
    resources, production, context = _prepared(order, store, "cold")
    assert reuse_cached_stages(order, resources, production, context).hits == 0
    deliverable = plain(order, store)

    resources, production, context = _prepared(order, store, "warm")
    warm = reuse_cached_stages(order, resources, production, context)
    assert warm.hits == 9
    assert warm.final is not None and warm.final.asset.digest == deliverable
    assert [segment.accepted is not None for segment in warm.segments] == [True, True]
    results = [*warm.segments[0].chain, *warm.segments[1].chain, warm.final]
    assert all(r.run.cache_hit and r.run.device_seconds == 0 for r in results)
    assert len(run_reuses(resources.store, "warm")) == 9

    edited = _order({(1, "caption"): "another caption"})
    resources, production, context = _prepared(edited, store, "edited")
    partial = reuse_cached_stages(edited, resources, production, context)
    found = [[result.run.stage for result in segment.chain] for segment in partial.segments]
    assert found == [["render", "composite", "encode", "gate"], ["render"]]
    assert partial.final is None
    assert len(run_reuses(resources.store, "edited")) == 5


def test_a_failing_lookup_is_a_miss_and_writes_nothing(factory_home, monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    store = str(tmp_path / "store")
    order = _order()
    resources, production, _ = _prepared(order, store, "cold")
    plain(order, store)

    class RenderEntriesUnreachable(LocalStore):
        def get(self, key: str) -> bytes:
            if key.startswith("cache/entries/render/"):
                raise StoreUnavailable("the store stopped answering")
            return super().get(key)

    flaky = dataclasses.replace(resources, store=RenderEntriesUnreachable(tmp_path / "store"))
    context = RunContext(order_id=order.id, flow_run_id="flaky")
    assert reuse_cached_stages(order, flaky, production, context).hits == 0
    assert run_reuses(flaky.store, "flaky") == []
    assert list_event_keys(flaky.store, "flaky") == []
