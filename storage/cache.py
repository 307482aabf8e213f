"""The segment cache: stage outputs indexed by their recipe, in the shared object store.

A cache key is the SHA-256 of the RFC 8785 canonical JSON of a stage's recipe:
stage name and version, model fingerprint, the parameters that determine the
output, and the digests of its input assets. Nothing is pickled, and values that
must not matter (paths, run ids) are simply never part of a recipe.

Layout::

    cache/entries/<stage>/<key[:2]>/<key>.json   which asset a recipe produced
    cache/leases/<stage>/<key>.json               who is computing it right now

Because entries live in the store, every worker that shares a bucket shares the
cache. A lease is written with a conditional put, so of two workers that miss at
the same moment exactly one computes; the other waits for the entry. A lease
expires (``lease_seconds``) so a crashed worker cannot block the key forever, and
a lease held by a dead process on this host is taken over at once.
"""

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, field_validator

from factory.assets import AssetRef, sha256_hex
from factory.errors import IntegrityError, ObjectNotFound
from factory.registry import ModelInfo
from factory.verdicts import Verdict
from storage.assets import get_asset
from storage.objectstore import ObjectStore

CacheMode = Literal["use", "off", "refresh"]
ENTRIES_PREFIX = "cache/entries/"
LEASES_PREFIX = "cache/leases/"
DEFAULT_LEASE_SECONDS = 900.0
_HOST = socket.gethostname()
# Leases this process holds right now: a lease naming this process but not in here
# was left behind by an earlier, failed attempt in this same process.
_held_here: set[str] = set()


def cache_key(recipe: dict[str, JsonValue]) -> str:
    """The digest of a recipe's canonical JSON: equal recipes, equal keys, on any machine."""
    return sha256_hex(rfc8785.dumps(recipe))


def entry_key(stage: str, key: str) -> str:
    return f"{ENTRIES_PREFIX}{stage}/{key[:2]}/{key}.json"


def lease_key(stage: str, key: str) -> str:
    return f"{LEASES_PREFIX}{stage}/{key}.json"


class CacheEntry(BaseModel):
    """What a recipe produced: the asset, its producing record, and what it cost then."""

    model_config = ConfigDict(frozen=True)

    stage: str
    key: str
    asset: AssetRef
    record_digest: str
    models: list[ModelInfo] = []
    device_class: str
    device_seconds: float
    created: datetime
    verdict: Verdict | None = None
    metrics: dict[str, float] = {}

    @field_validator("models", mode="before")
    @classmethod
    def _facts_only(cls, models: Any) -> Any:
        # Entries written before 0.2 held the whole resolved model, the writer's local
        # weights path included; they still count, by the model's facts alone.
        if not isinstance(models, list):
            return models
        return [_legacy_facts(model) if "entry" in model else model for model in models]


class Lookup(BaseModel):
    """A cache lookup: the entry when it is usable, else why it was not."""

    model_config = ConfigDict(frozen=True)

    entry: CacheEntry | None = None
    problem: str | None = None


class _Lease(BaseModel):
    owner: str
    host: str
    pid: int
    expires: float


class SegmentCache:
    def __init__(self, store: ObjectStore, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.store = store
        self.lease_seconds = lease_seconds

    def lookup(self, stage: str, key: str) -> Lookup:
        """The entry for ``key`` with its asset's bytes checked against the digest.

        A missing or corrupted asset makes the lookup a miss with the problem named,
        so the caller recomputes and the new entry replaces the broken one.
        """
        try:
            raw = self.store.get(entry_key(stage, key))
        except ObjectNotFound:
            return Lookup()
        try:
            entry = CacheEntry.model_validate_json(raw)
        except ValidationError:
            return Lookup(problem=f"cache entry {entry_key(stage, key)} is unreadable")
        try:
            get_asset(self.store, entry.asset)
        except (ObjectNotFound, IntegrityError) as error:
            return Lookup(problem=str(error))
        return Lookup(entry=entry)

    def put(self, entry: CacheEntry, *, replace: bool) -> None:
        """Index an entry; the first writer wins unless ``replace`` (refresh, repair)."""
        data = entry.model_dump_json().encode()
        if replace:
            self.store.put(entry_key(entry.stage, entry.key), data, "application/json")
        else:
            self.store.put_if_absent(entry_key(entry.stage, entry.key), data, "application/json")

    def entries(self, stage: str | None = None) -> Iterator[CacheEntry]:
        prefix = f"{ENTRIES_PREFIX}{stage}/" if stage else ENTRIES_PREFIX
        for key in self.store.list(prefix):
            try:
                yield CacheEntry.model_validate_json(self.store.get(key))
            except (ObjectNotFound, ValidationError):
                continue

    def delete(self, entry: CacheEntry) -> None:
        self.store.delete(entry_key(entry.stage, entry.key))

    @contextmanager
    def single_flight(
        self, stage: str, key: str, poll_seconds: float = 0.2
    ) -> Iterator[CacheEntry | None]:
        """Hold the lease for ``key``, or wait for whoever holds it.

        Yields None when this caller holds the lease and must compute, or the entry
        another holder produced while this caller waited.
        """
        lease = _Lease(
            owner=uuid.uuid4().hex,
            host=_HOST,
            pid=os.getpid(),
            expires=time.time() + self.lease_seconds,
        )
        where = lease_key(stage, key)
        while True:
            # Registered before the put, so no other thread of ours can see the lease
            # without its owner and mistake it for an abandoned one.
            _held_here.add(lease.owner)
            if self.store.put_if_absent(
                where, lease.model_dump_json().encode(), "application/json"
            ):
                break
            _held_here.discard(lease.owner)
            found = self.lookup(stage, key)
            if found.entry is not None:
                yield found.entry
                return
            if self._cleared_if_abandoned(where):
                continue
            time.sleep(poll_seconds)
        try:
            # Whoever held the lease before may have finished between our miss and our
            # put: look again before computing, or the work is done twice.
            found = self.lookup(stage, key)
            yield found.entry
        finally:
            # Released before it stops counting as held here, so no thread of ours
            # can judge it abandoned while it still exists; un-marked even when the
            # release fails (the store went away), so this process's retry can take
            # the lease over at once instead of waiting for it to expire.
            try:
                self._release(where, lease.owner)
            finally:
                _held_here.discard(lease.owner)

    def _cleared_if_abandoned(self, where: str) -> bool:
        """Remove the lease at ``where`` if its holder is gone; True when it is gone now."""
        try:
            seen = self.store.get(where)
        except ObjectNotFound:
            return True
        if not self._abandoned(seen):
            return False
        # Delete only if it is still the lease judged abandoned: another waiter may have
        # taken it over and put its own since. This narrows the race without closing it
        # (the stores have no conditional delete); losing it costs a second computation
        # of the same output, never a wrong entry (entries are written once).
        try:
            if self.store.get(where) == seen:
                self.store.delete(where)
        except ObjectNotFound:
            pass
        return True

    def _abandoned(self, lease_bytes: bytes) -> bool:
        try:
            held = _Lease.model_validate_json(lease_bytes)
        except (ValidationError, json.JSONDecodeError):
            return True
        if held.expires < time.time():
            return True
        if held.host != _HOST:
            return False
        if held.pid == os.getpid():
            return held.owner not in _held_here
        return not process_alive(held.pid)

    def _release(self, where: str, owner: str) -> None:
        try:
            held = _Lease.model_validate_json(self.store.get(where))
        except (ObjectNotFound, ValidationError):
            return
        if held.owner == owner:
            self.store.delete(where)


def _legacy_facts(model: dict[str, Any]) -> dict[str, Any]:
    entry = model["entry"]
    return {
        "name": entry["name"],
        "weights_fingerprint": model["fingerprint"],
        "training_provenance": entry["training_provenance"],
        "royalty_routing": entry["royalty_routing"],
    }


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
