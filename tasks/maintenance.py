"""Scheduled upkeep as tasks: refresh the floor warehouse and report, collect cache garbage.

The same work `factory floor ingest` + `factory floor report` and `factory cache gc` do from
the shell, for the `floor-report` and `cache-gc` deployments. Each publishes what it did as
a markdown artifact, so an operator sees the last nightly report in the Prefect UI.
"""

from datetime import timedelta

from prefect import task
from prefect.artifacts import create_markdown_artifact

from factory.settings import Settings
from storage.cache_maintenance import GcResult, collect_garbage
from storage.open import open_store
from storage.trust import load_trusted_keys, resolve_anchor
from storage.warehouse import Warehouse, summary
from storage.warehouse.summary import FloorSummary

FLOOR_REPORT_KEY = "floor-report"
CACHE_GC_KEY = "cache-gc"


@task(name="refresh-floor")
def refresh_floor(settings: Settings, store: str | None) -> FloorSummary:
    """Ingest what is new in the store into the warehouse and publish the floor's summary."""
    opened = open_store(store or settings.store_spec, settings.store_timeouts)
    # Records count only when a key this factory's root certified signed them.
    anchor = resolve_anchor(settings.trust, settings.keys_dir)
    warehouse = Warehouse(*settings.warehouse)
    report = warehouse.ingest(opened, anchor)
    # The day's per-run ingests left small files: merged nightly, while readers read.
    compacted = warehouse.compact()
    result = summary(warehouse)
    rejected = (
        f"\n\n{len(report.rejected)} object(s) were not loaded (bad signature or unreadable); "
        "`factory floor ingest` lists them."
        if report.rejected
        else ""
    )
    files = (
        f"\n\nData files compacted: {compacted['data_files_before']:,} → "
        f"{compacted['data_files_after']:,}."
    )
    create_markdown_artifact(
        result.markdown() + rejected + files,
        key=FLOOR_REPORT_KEY,
        description="Nightly floor report",
    )
    return result


@task(name="collect-cache-garbage")
def collect_cache_garbage(
    settings: Settings, store: str | None, older_than: timedelta, dry_run: bool
) -> GcResult:
    """Drop cache entries older than ``older_than`` (never a delivered output's lineage)."""
    opened = open_store(store or settings.store_spec, settings.store_timeouts)
    trusted = load_trusted_keys(opened, resolve_anchor(settings.trust, settings.keys_dir))
    result = collect_garbage(opened, trusted, older_than, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    days = older_than / timedelta(days=1)
    create_markdown_artifact(
        f"# Cache garbage collection\n\nIn `{opened.url}`, entries older than {days:g} days: "
        f"{verb} {result.entries_removed} entries and {result.assets_removed} assets "
        f"({result.bytes_freed / 1e6:.1f} MB); kept {result.assets_kept_for_deliverables} "
        "assets that delivered outputs' lineage references.\n",
        key=CACHE_GC_KEY,
        description="Segment cache garbage collection",
    )
    return result
