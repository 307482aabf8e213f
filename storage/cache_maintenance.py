"""Operating the segment cache: what it holds, what it saved, and garbage collection."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from factory.errors import ObjectNotFound
from factory.stages import CACHED_STAGES
from storage.assets import asset_key
from storage.cache import SegmentCache
from storage.lineage_reader import LineageReader
from storage.objectstore import ObjectStore
from storage.trust import TrustedKeys


class StageStats(BaseModel):
    stage: str
    entries: int
    bytes: int
    computed: int
    reused: int
    device_seconds_saved: float


class CacheStats(BaseModel):
    stages: list[StageStats]

    @property
    def hit_rate(self) -> float:
        reused = sum(s.reused for s in self.stages)
        total = reused + sum(s.computed for s in self.stages)
        return reused / total if total else 0.0


class GcResult(BaseModel):
    entries_removed: int
    assets_removed: int
    bytes_freed: int
    assets_kept_for_deliverables: int


def cache_stats(store: ObjectStore, trusted: TrustedKeys) -> CacheStats:
    """Entries and bytes per stage, computed vs reused runs, device-seconds saved by reuse."""
    reader = LineageReader(store, trusted)
    produced = reader.producing_records()
    computed = Counter(record.stage.name for record in produced.values())
    reused: Counter[str] = Counter()
    saved: defaultdict[str, float] = defaultdict(float)
    for record in reader.reuse_records():
        reused[record.stage.name] += 1
        original = produced.get(record.asset.digest)
        if original is not None:
            saved[record.stage.name] += original.device_seconds
    cache = SegmentCache(store)
    stages = []
    for stage in CACHED_STAGES:
        entries = list(cache.entries(stage))
        stages.append(
            StageStats(
                stage=stage,
                entries=len(entries),
                bytes=sum(entry.asset.size for entry in entries),
                computed=computed[stage],
                reused=reused[stage],
                device_seconds_saved=saved[stage],
            )
        )
    return CacheStats(stages=stages)


def delivered_ancestry(store: ObjectStore, trusted: TrustedKeys) -> set[str]:
    """Every asset digest in the lineage of a delivered output (an assembled deliverable)."""
    produced = LineageReader(store, trusted).producing_records()
    protected: set[str] = set()
    pending = [digest for digest, rec in produced.items() if rec.stage.name == "assemble"]
    while pending:
        digest = pending.pop()
        if digest in protected:
            continue
        protected.add(digest)
        record = produced.get(digest)
        if record is not None:
            pending.extend(parent.digest for parent in record.parents)
    return protected


def collect_garbage(
    store: ObjectStore, trusted: TrustedKeys, older_than: timedelta, *, dry_run: bool = False
) -> GcResult:
    """Drop cache entries older than ``older_than`` and the assets only they kept alive.

    An asset in the lineage of any delivered output is never removed, and lineage
    records are never removed: provenance outlives the cache.
    """
    cutoff = datetime.now(UTC) - older_than
    protected = delivered_ancestry(store, trusted)
    cache = SegmentCache(store)
    removed = assets = freed = kept = 0
    for entry in list(cache.entries()):
        if entry.created > cutoff:
            continue
        removed += 1
        if entry.asset.digest in protected:
            kept += 1
            if not dry_run:
                cache.delete(entry)
            continue
        try:
            size = store.head(asset_key(entry.asset.digest))
        except ObjectNotFound:
            size = None
        if not dry_run:
            cache.delete(entry)
            store.delete(asset_key(entry.asset.digest))
        if size is not None:
            assets += 1
            freed += size.size
    return GcResult(
        entries_removed=removed,
        assets_removed=assets,
        bytes_freed=freed,
        assets_kept_for_deliverables=kept,
    )
