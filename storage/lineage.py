"""Lineage records in the object store: write-once, one per asset, indexed per flow run.

Layout::

    lineage/records/<d[:2]>/<d>.dsse.json   the signed envelope for asset d
    lineage/runs/<flow_run_id>/<d>          the envelope's record digest (hex), one per record

A record is written before its run index entry, so an index entry never points at
nothing; a crash in between leaves a record the run index does not list yet, and
writing the same record again (a retried task) adds the entry.

Signatures make tampering detectable (``factory.lineage.verify_record``); an S3
bucket with Object Lock can also make it impossible to remove what was written.
Create the bucket with the lock on (this turns versioning on, and it cannot be
added to an existing bucket), then give it a default retention::

    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    enable_object_lock(client, name, days=3650)

Every object version written afterwards carries COMPLIANCE retention: no one, root
included, can delete that version or shorten its retention until it expires. A
plain overwrite or delete by someone with write access still "succeeds", but only
adds a new version or a delete marker: readers of the key then get the newer bytes
(which fail verification unless signed with the factory's key), while the original
version stays retrievable by its VersionId. Conditional puts (``put_if_absent``)
keep working, so records stay write-once at the key; after a delete marker the key
reads as absent and a conditional put succeeds again.

Checked on SeaweedFS 4.48 (tests/test_lineage.py), matching AWS: deleting a locked
version is refused (AccessDenied, with or without BypassGovernanceRetention),
COMPLIANCE retention cannot be shortened or turned into GOVERNANCE (AccessDenied),
and a lock configuration on a bucket created without the lock fails with
InvalidBucketState.
"""

import re
from typing import Any

from factory.assets import sha256_hex
from factory.errors import BadInput, ObjectNotFound
from storage.objectstore import ObjectStore, write_once

RECORDS_PREFIX = "lineage/records/"
REUSES_PREFIX = "lineage/reuses/"
RUNS_PREFIX = "lineage/runs/"
CONTENT_TYPE = "application/json"

_DIGEST = re.compile(r"[0-9a-f]{64}")
# Prefect run ids are UUIDs; anything that is one safe key segment is accepted.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def record_key(asset_digest: str) -> str:
    return f"{RECORDS_PREFIX}{asset_digest[:2]}/{asset_digest}.dsse.json"


def reuse_key(asset_digest: str, record_digest: str) -> str:
    return f"{REUSES_PREFIX}{asset_digest[:2]}/{asset_digest}/{record_digest}.dsse.json"


def run_index_prefix(flow_run_id: str) -> str:
    return f"{RUNS_PREFIX}{flow_run_id}/"


def enable_object_lock(client: Any, bucket: str, days: int) -> None:
    """Give a bucket created with ObjectLockEnabledForBucket=True a default COMPLIANCE retention.

    client is a boto3 S3 client. Compliance retention cannot be shortened or lifted
    by anyone before it runs out: choose days as the time records must outlive.
    """
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
        },
    )


class RecordStore:
    """Signed lineage envelopes in an object store, keyed by the asset they describe."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write(self, envelope_bytes: bytes, asset_digest: str, flow_run_id: str) -> str:
        """Store the record write-once and index it under its run; its record digest.

        Identical bytes already stored are a no-op; different bytes raise WriteConflict.
        """
        _check_digest(asset_digest)
        _check_run_id(flow_run_id)
        digest = sha256_hex(envelope_bytes)
        self._put_once(record_key(asset_digest), envelope_bytes)
        self._put_once(f"{run_index_prefix(flow_run_id)}{asset_digest}", digest.encode())
        return digest

    def write_reuse(self, envelope_bytes: bytes, asset_digest: str, flow_run_id: str) -> str:
        """Store the record of a cache reuse of an existing asset; its record digest.

        An asset has one producing record but may be reused by any number of runs, so
        reuse records live beside it, keyed by their own digest, and the run index lists
        them under ``reuses/``.
        """
        _check_digest(asset_digest)
        _check_run_id(flow_run_id)
        digest = sha256_hex(envelope_bytes)
        self._put_once(reuse_key(asset_digest, digest), envelope_bytes)
        self._put_once(f"{run_index_prefix(flow_run_id)}reuses/{digest}", asset_digest.encode())
        return digest

    def _put_once(self, key: str, data: bytes) -> None:
        write_once(
            self._store,
            key,
            data,
            CONTENT_TYPE,
            "lineage is write-once, so the earlier one stands. Find out which run wrote it "
            "before trusting either.",
        )

    def read(self, asset_digest: str) -> bytes:
        _check_digest(asset_digest)
        key = record_key(asset_digest)
        try:
            return self._store.get(key)
        except ObjectNotFound:
            raise ObjectNotFound(
                f"No lineage record for asset {asset_digest} in {self._store.url} "
                f"(looked for {key}); the asset was made without lineage, or by another store."
            ) from None

    def exists(self, asset_digest: str) -> bool:
        _check_digest(asset_digest)
        return self._store.head(record_key(asset_digest)) is not None


def _check_digest(asset_digest: str) -> None:
    if not _DIGEST.fullmatch(asset_digest):
        raise BadInput(f"{asset_digest!r} is not an asset digest (64 lowercase hex characters).")


def _check_run_id(flow_run_id: str) -> None:
    if not _RUN_ID.fullmatch(flow_run_id):
        raise BadInput(
            f"{flow_run_id!r} is not a usable flow run id: use letters, digits, '.', '_' and '-'."
        )
