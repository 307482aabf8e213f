from datetime import UTC, datetime, timedelta

import pytest

from cli.cache import parse_age
from factory.assets import sha256_hex
from factory.errors import BadInput, IntegrityError
from factory.lineage import AssetInfo, CodeInfo, LineageRecord, ParentLink, StageInfo, sign_record
from factory.orders import Order, Segment
from factory.settings import Settings
from flows.produce import produce
from media.weights import resolve_model
from storage import keys
from storage.assets import asset_key, put_asset
from storage.cache import CacheEntry, SegmentCache
from storage.cache_maintenance import cache_stats, collect_garbage
from storage.lineage import RecordStore
from storage.local import LocalStore
from storage.verification import verify
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.render import RENDER
from tasks.resources import open_resources
from tasks.runner import run_stage
from tests.test_cache import _order
from tests.trusted import local_trust


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

    stats = {s.stage: s for s in cache_stats(store, local_trust(store)).stages}
    assert (stats["render"].entries, stats["render"].computed, stats["render"].reused) == (3, 3, 2)
    assert stats["assemble"].reused == 1
    assert stats["render"].device_seconds_saved > 0

    dry = collect_garbage(store, local_trust(store), timedelta(0), dry_run=True)
    # Every entry goes (two segments' render, composite, encode and gate, the assembly, the
    # orphan's render); only the orphan's asset does.
    assert (dry.entries_removed, dry.assets_removed) == (10, 1)
    assert store.head(asset_key(orphan.asset.digest)) is not None

    result = collect_garbage(store, local_trust(store), timedelta(0))
    assert (result.entries_removed, result.assets_removed) == (10, 1)
    assert result.assets_kept_for_deliverables == 9
    assert store.head(asset_key(orphan.asset.digest)) is None
    assert verify(store, local_trust(store), digest=delivery.deliverable.digest).verified


def test_gc_age_parsing():
    assert parse_age("7d") == timedelta(days=7)
    assert parse_age("90m") == timedelta(minutes=90)
    with pytest.raises(BadInput, match="like 30m, 12h, 7d or 2w"):
        parse_age("soon")


def test_gc_and_stats_refuse_a_store_holding_a_record_the_keys_do_not_sign(tmp_path):
    # A forged "deliverable" record claims the orphan as its parent, so trusting it would
    # keep the orphan; GC must not act on a record whose signature does not verify.
    store = LocalStore(tmp_path / "store")
    keys.init(tmp_path / "keys")
    keys.publish_public_keys(tmp_path / "keys", store)
    keys.init(tmp_path / "intruder")
    intruder = keys.load_signer(tmp_path / "intruder")
    orphan = put_asset(store, b"cached, never delivered", "video/mp4")
    SegmentCache(store).put(
        CacheEntry(
            stage="render",
            key="a" * 64,
            asset=orphan,
            record_digest="0" * 64,
            device_class="cpu",
            device_seconds=1.0,
            created=datetime(2020, 1, 1, tzinfo=UTC),
        ),
        replace=False,
    )
    fake = sha256_hex(b"no such deliverable")
    now = datetime.now(UTC)
    forged = LineageRecord(
        asset=AssetInfo(digest=fake, media_type="video/mp4", size=1, uri=f"file:///{fake}"),
        parents=[ParentLink(digest=orphan.digest, record_digest="0" * 64)],
        stage=StageInfo(name="assemble", version="1"),
        order_id="forged",
        flow_run_id="forged-run",
        task_run_id="none",
        device_class="cpu",
        device_seconds=0.0,
        started=now,
        ended=now,
        code=CodeInfo(package_version="0"),
        key_id=intruder.key_id,
    )
    RecordStore(store).write(sign_record(forged, intruder), fake, "forged-run")
    for operation in (
        lambda: collect_garbage(store, local_trust(store, tmp_path / "keys"), timedelta(0)),
        lambda: cache_stats(store, local_trust(store, tmp_path / "keys")),
    ):
        with pytest.raises(IntegrityError, match=intruder.key_id):
            operation()
    assert store.head(asset_key(orphan.digest)) is not None
    assert len(list(SegmentCache(store).entries())) == 1
