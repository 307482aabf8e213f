from datetime import timedelta

import pytest

from cli.cache import parse_age
from factory.errors import BadInput
from factory.orders import Order, Segment
from factory.settings import Settings
from flows.produce import produce
from media.weights import resolve_model
from storage.assets import asset_key
from storage.cache_maintenance import cache_stats, collect_garbage
from storage.local import LocalStore
from storage.verification import verify
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.render import RENDER
from tasks.resources import open_resources
from tasks.runner import run_stage
from tests.test_cache import _order


@pytest.mark.slow
def test_stats_and_gc_keep_what_deliverables_reference(flow_env, tmp_path):
    store = LocalStore(tmp_path / "store")
    delivery = produce(_order(), str(tmp_path / "store"))
    produce(_order(), str(tmp_path / "store"))
    settings = Settings()
    resources = open_resources(settings, "cpu", str(tmp_path / "store"))
    scratch = Order(
        id="scratch", segments=[Segment(prompt="never delivered", duration_s=0.5, fps=8)]
    )
    model = resolve_model(resources.registry.get("tiny"), settings.models_dir)
    production = Production(models={"tiny": model}, background=None, logo=None)
    orphan = run_stage(
        resources,
        RENDER.plan(scratch, production, 0, []),
        RunContext(order_id="scratch", flow_run_id="scratch-run"),
        "use",
    )

    stats = {s.stage: s for s in cache_stats(store).stages}
    assert (stats["render"].entries, stats["render"].computed, stats["render"].reused) == (3, 3, 2)
    assert stats["assemble"].reused == 1
    assert stats["render"].device_seconds_saved > 0

    dry = collect_garbage(store, timedelta(0), dry_run=True)
    assert (dry.entries_removed, dry.assets_removed) == (8, 1)
    assert store.head(asset_key(orphan.asset.digest)) is not None

    result = collect_garbage(store, timedelta(0))
    assert (result.entries_removed, result.assets_removed) == (8, 1)
    assert result.assets_kept_for_deliverables == 7
    assert store.head(asset_key(orphan.asset.digest)) is None
    assert verify(store, digest=delivery.deliverable.digest).verified


def test_gc_age_parsing():
    assert parse_age("7d") == timedelta(days=7)
    assert parse_age("90m") == timedelta(minutes=90)
    with pytest.raises(BadInput, match="like 30m, 12h, 7d or 2w"):
        parse_age("soon")
