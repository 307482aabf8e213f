"""Upkeep flows for schedules: the nightly floor report and the segment cache's garbage collection.

Thin on purpose: each runs one task that does what the matching `factory` command does
(`factory floor ingest` + `report`, `factory cache gc`), with the worker's own settings.
"""

from datetime import timedelta
from typing import Annotated

from prefect import flow
from pydantic import Field

from factory.settings import Settings
from storage.cache_maintenance import GcResult
from storage.warehouse.summary import FloorSummary, money
from tasks.maintenance import collect_cache_garbage, refresh_floor


@flow(name="floor-report", log_prints=True)
def floor_report(store: str | None = None) -> FloorSummary:
    """Load the store's new floor events and lineage into the warehouse; publish the summary.

    `store` is a directory or s3://bucket/prefix; unset means FACTORY_STORE or the local
    default under FACTORY_HOME. The summary is the run's `floor-report` artifact.
    """
    result = refresh_floor(Settings(), store)
    print(
        f"floor: {result.delivered_minutes:,.3f} delivered minutes, cost per delivered "
        f"minute {money(result.cost_per_delivered_minute, result.currency)}"
    )
    return result


@flow(name="cache-gc", log_prints=True)
def cache_gc(
    older_than_days: Annotated[
        float, Field(gt=0, le=3650, description="Drop cache entries older than this many days")
    ] = 7.0,
    store: str | None = None,
    dry_run: bool = False,
) -> GcResult:
    """Drop old segment-cache entries and the assets only they kept alive.

    An asset in a delivered output's lineage is never removed, nor is any lineage record.
    `dry_run` reports what would go and changes nothing.
    """
    result = collect_cache_garbage(Settings(), store, timedelta(days=older_than_days), dry_run)
    print(
        f"cache gc: {result.entries_removed} entries, {result.assets_removed} assets, "
        f"{result.bytes_freed / 1e6:.1f} MB"
    )
    return result
