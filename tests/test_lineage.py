"""Lineage records: DSSE signing and verification, tamper detection, and the record store."""

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import rfc8785
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from pydantic import ValidationError
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from factory.errors import BadInput, IntegrityError, ObjectNotFound, WriteConflict
from factory.lineage import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    AssetInfo,
    CodeInfo,
    LineageRecord,
    ModelInfo,
    ParentLink,
    StageInfo,
    record_digest,
    sign_record,
    statement,
    verify_record,
)
from storage.keys import LINEAGE_PREFIX, LineageSigner, publish_public_keys
from storage.lineage import RecordStore, enable_object_lock, record_key
from storage.local import LocalStore
from storage.s3 import S3Store
from tests.run_index import run_records


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_record(signer: LineageSigner, name: str = "segment-0", **changes) -> LineageRecord:
    digest = digest_of(name)
    fields = {
        "asset": AssetInfo(
            digest=digest,
            media_type="video/mp4",
            size=1234,
            uri=f"file:///store/assets/sha256/{digest[:2]}/{digest}",
        ),
        "parents": [ParentLink(digest=digest_of("input"), record_digest=digest_of("record"))],
        "stage": StageInfo(name="encode", version="1"),
        "order_id": "order-1",
        "flow_run_id": "run-1",
        "task_run_id": "task-1",
        "model": ModelInfo(
            name="tiny",
            weights_fingerprint=digest_of("weights"),
            training_provenance=[{"source": "synthetic noise", "license": "CC0-1.0"}],
            royalty_routing=[{"holder": "studio", "share": 0.75}, {"holder": "lab", "share": 0.25}],
        ),
        "parameters": {"seed": 7, "steps": 4, "crf": 18, "captions": ["héllo"], "scale": 0.5},
        "device_class": "cpu",
        "device_seconds": 1.5,
        "started": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "ended": datetime(2026, 1, 2, 3, 4, 7, 250000, tzinfo=UTC),
        "code": CodeInfo(package_version="0.1.0", git_commit="0" * 40),
        "key_id": signer.key_id,
    }
    return LineageRecord(**{**fields, **changes})


@pytest.fixture(scope="module")
def signer() -> LineageSigner:
    return LineageSigner(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def public_keys(signer: LineageSigner) -> dict:
    return {signer.key_id: signer._private_key.public_key()}


def resign(envelope_bytes: bytes, signer: LineageSigner, **changes) -> bytes:
    """Re-sign an envelope with its payload changed by changes (statement fields)."""
    stmt = json.loads(Envelope.from_dict(json.loads(envelope_bytes)).payload)
    stmt.update(changes)
    envelope = Envelope(rfc8785.dumps(stmt), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return rfc8785.dumps(envelope.to_dict())


# --- signing and verifying -------------------------------------------------------------


def test_roundtrip(signer, public_keys):
    record = make_record(signer)
    envelope = sign_record(record, signer)
    assert verify_record(envelope, public_keys) == record
    assert verify_record(envelope, public_keys, expected_digest=record.asset.digest) == record


def test_envelope_is_an_in_toto_statement_in_dsse(signer):
    record = make_record(signer)
    data = json.loads(sign_record(record, signer))
    assert data["payloadType"] == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in data["signatures"]] == [signer.key_id]
    stmt = json.loads(base64.b64decode(data["payload"]))
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == PREDICATE_TYPE
    assert stmt["subject"] == [
        {"name": record.asset.uri, "digest": {"sha256": record.asset.digest}}
    ]
    assert stmt["predicate"]["started"] == "2026-01-02T03:04:05Z"
    assert stmt["predicate"]["ended"] == "2026-01-02T03:04:07.250000Z"
    assert stmt["predicate"]["reused_from"] is None


def test_canonical_bytes_are_stable(signer):
    first = make_record(signer, parameters={"seed": 7, "steps": 4, "sizes": [64, 48]})
    # Same values, other dict order and another time zone for the same instant.
    second = make_record(
        signer,
        parameters={"sizes": [64, 48], "steps": 4, "seed": 7},
        started=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
    )
    envelope = sign_record(first, signer)
    assert sign_record(second, signer) == envelope
    assert record_digest(envelope) == hashlib.sha256(envelope).hexdigest()
    assert rfc8785.dumps(json.loads(envelope)) == envelope
    payload = base64.b64decode(json.loads(envelope)["payload"])
    assert rfc8785.dumps(json.loads(payload)) == payload
    assert payload == rfc8785.dumps(statement(first))


def flip_payload_byte(envelope_bytes: bytes) -> bytes:
    """The envelope with one bit flipped in its decoded payload: seed 7 becomes seed 6."""
    data = json.loads(envelope_bytes)
    payload = bytearray(base64.b64decode(data["payload"]))
    payload[payload.index(b'"seed":7') + 7] ^= 0x01
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    return rfc8785.dumps(data)


def test_flipped_payload_byte_is_a_bad_signature(signer, public_keys):
    tampered = flip_payload_byte(sign_record(make_record(signer), signer))
    assert b'"seed":6' in base64.b64decode(json.loads(tampered)["payload"])
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_record(tampered, public_keys)


def test_flipped_signature_byte_is_a_bad_signature(signer, public_keys):
    data = json.loads(sign_record(make_record(signer), signer))
    sig = bytearray(base64.b64decode(data["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    data["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_record(rfc8785.dumps(data), public_keys)


def test_unknown_signing_key(public_keys):
    stranger = LineageSigner(Ed25519PrivateKey.generate())
    envelope = sign_record(make_record(stranger), stranger)
    with pytest.raises(IntegrityError, match=f"unknown key id.*{stranger.key_id}"):
        verify_record(envelope, public_keys)


def test_forged_key_id_with_a_foreign_key(signer, public_keys):
    # A stranger claims our key id: the id is known, the signature is not ours.
    stranger = LineageSigner(Ed25519PrivateKey.generate())
    data = json.loads(sign_record(make_record(stranger), stranger))
    data["signatures"][0]["keyid"] = signer.key_id
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_record(rfc8785.dumps(data), public_keys)


def test_subject_predicate_mismatch(signer, public_keys):
    envelope = sign_record(make_record(signer), signer)
    other = [{"name": "elsewhere", "digest": {"sha256": digest_of("other")}}]
    with pytest.raises(IntegrityError, match=r"subject digest .* does not match"):
        verify_record(resign(envelope, signer, subject=other), public_keys)


def test_record_stored_under_another_asset(signer, public_keys):
    envelope = sign_record(make_record(signer), signer)
    with pytest.raises(IntegrityError, match=r"describes asset .* not "):
        verify_record(envelope, public_keys, expected_digest=digest_of("other"))


def test_predicate_names_another_key(signer, public_keys):
    stmt = statement(make_record(signer))
    stmt["predicate"]["key_id"] = digest_of("some other key")
    envelope = Envelope(rfc8785.dumps(stmt), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    with pytest.raises(IntegrityError, match=r"names key .* but was signed by key"):
        verify_record(rfc8785.dumps(envelope.to_dict()), public_keys)


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (b"\xff not json", "not JSON"),
        (b"[1, 2]", "not a DSSE envelope"),
        (b'{"payload": "e30=", "payloadType": "x"}', "not a DSSE envelope"),
        (b'{"payload": "!!", "payloadType": "x", "signatures": []}', "not a DSSE envelope"),
        (
            b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
            "no signatures",
        ),
    ],
)
def test_malformed_envelopes(public_keys, envelope, reason):
    with pytest.raises(IntegrityError, match=reason):
        verify_record(envelope, public_keys)


def test_wrong_payload_type(signer, public_keys):
    envelope = Envelope(rfc8785.dumps(statement(make_record(signer))), "application/json", {})
    envelope.sign(signer)
    with pytest.raises(IntegrityError, match="payloadType 'application/json'"):
        verify_record(rfc8785.dumps(envelope.to_dict()), public_keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"predicateType": "https://slsa.dev/provenance/v1"},
        {"_type": "https://in-toto.io/Statement/v0.1"},
        {"predicate": {"asset": "nope"}},
    ],
)
def test_signed_payload_that_is_not_a_lineage_statement(signer, public_keys, changes):
    envelope = resign(sign_record(make_record(signer), signer), signer, **changes)
    with pytest.raises(IntegrityError, match=r"not a valid .* statement"):
        verify_record(envelope, public_keys)


def test_unencodable_parameters_are_refused(signer):
    with pytest.raises(ValidationError, match="finite number"):
        make_record(signer, parameters={"guidance": float("inf")})
    # I-JSON numbers are doubles: a larger integer would not read back exactly.
    with pytest.raises(BadInput, match="canonical JSON"):
        sign_record(make_record(signer, parameters={"seed": 2**60}), signer)


def test_signer_must_match_the_record(signer):
    stranger = LineageSigner(Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="signer is"):
        sign_record(make_record(signer), stranger)


def test_third_party_verification_with_only_the_published_pem(tmp_path, signer):
    """securesystemslib alone, given the PEM from the store, verifies our envelope."""
    store = LocalStore(tmp_path / "store")
    pem = signer.public_pem
    store.put_if_absent(f"{LINEAGE_PREFIX}{signer.key_id}.pem", pem)
    envelope_bytes = sign_record(make_record(signer), signer)

    published = store.get(f"{LINEAGE_PREFIX}{signer.key_id}.pem")
    public = load_pem_public_key(published)
    keyid = hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()
    envelope = Envelope.from_dict(json.loads(envelope_bytes))
    accepted = envelope.verify([SSlibKey.from_crypto(public, keyid, "ed25519")], 1)
    assert list(accepted) == [signer.key_id]
    assert envelope.payload_type == "application/vnd.in-toto+json"
    assert json.loads(envelope.payload)["predicate"]["asset"]["digest"] == digest_of("segment-0")


def test_third_party_verification_after_publish(tmp_path):
    """The same, through the real publish path of storage.keys."""
    from storage import keys

    keys_dir = tmp_path / "keys"
    store = LocalStore(tmp_path / "store")
    keys.init(keys_dir)
    publish_public_keys(keys_dir, store)
    signer = keys.load_signer(keys_dir)
    envelope = Envelope.from_dict(json.loads(sign_record(make_record(signer), signer)))
    public = load_pem_public_key(store.get(f"{LINEAGE_PREFIX}{signer.key_id}.pem"))
    envelope.verify([SSlibKey.from_crypto(public, signer.key_id, "ed25519")], 1)


# --- the record store ------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_write_read_exists(local, signer, public_keys):
    record = make_record(signer)
    envelope = sign_record(record, signer)
    records = RecordStore(local)
    assert not records.exists(record.asset.digest)
    digest = records.write(envelope, record.asset.digest, "run-1")
    assert digest == record_digest(envelope)
    assert records.exists(record.asset.digest)
    assert records.read(record.asset.digest) == envelope
    d = record.asset.digest
    assert local.get(f"lineage/records/{d[:2]}/{d}.dsse.json") == envelope
    assert verify_record(records.read(d), public_keys, expected_digest=d) == record


def test_identical_rewrite_is_a_no_op(local, signer):
    record = make_record(signer)
    envelope = sign_record(record, signer)
    records = RecordStore(local)
    first = records.write(envelope, record.asset.digest, "run-1")
    assert records.write(envelope, record.asset.digest, "run-1") == first
    assert run_records(local, "run-1") == [(record.asset.digest, first)]


def test_different_record_for_the_same_asset_conflicts(local, signer):
    records = RecordStore(local)
    original = make_record(signer)
    records.write(sign_record(original, signer), original.asset.digest, "run-1")
    rival = make_record(signer, flow_run_id="run-2")
    key = record_key(original.asset.digest)
    with pytest.raises(WriteConflict, match=key):
        records.write(sign_record(rival, signer), rival.asset.digest, "run-2")
    assert records.read(original.asset.digest) == sign_record(original, signer)
    assert run_records(local, "run-2") == []


def test_run_index_lists_a_runs_records(local, signer):
    records = RecordStore(local)
    written = {}
    for run, names in (("run-a", ["s0", "s1", "s2"]), ("run-b", ["s3"])):
        for name in names:
            record = make_record(signer, name, flow_run_id=run)
            digest = records.write(sign_record(record, signer), record.asset.digest, run)
            written.setdefault(run, []).append((record.asset.digest, digest))
    assert run_records(local, "run-a") == sorted(written["run-a"])
    assert run_records(local, "run-b") == written["run-b"]
    assert run_records(local, "run-c") == []


def test_missing_record(local):
    with pytest.raises(ObjectNotFound, match=f"No lineage record for asset {digest_of('x')}"):
        RecordStore(local).read(digest_of("x"))


@pytest.mark.parametrize(
    ("asset", "run"), [("ABC", "run-1"), (digest_of("x"), "../other"), (digest_of("x"), "")]
)
def test_bad_keys_are_refused(local, asset, run):
    with pytest.raises(BadInput):
        RecordStore(local).write(b"{}", asset, run)


class FailingIndexStore(LocalStore):
    """A store that records the order of writes and refuses run-index writes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[str] = []

    def put_if_absent(self, key, data, content_type="application/octet-stream") -> bool:
        self.writes.append(key)
        if key.startswith("lineage/runs/"):
            raise OSError("index write failed")
        return super().put_if_absent(key, data, content_type)


def test_record_is_written_before_its_index_entry(tmp_path, signer):
    record = make_record(signer)
    envelope = sign_record(record, signer)
    failing = FailingIndexStore(tmp_path / "store")
    with pytest.raises(OSError):
        RecordStore(failing).write(envelope, record.asset.digest, "run-1")
    assert failing.writes == [
        record_key(record.asset.digest),
        "lineage/runs/run-1/" + record.asset.digest,
    ]
    # The record is there without its index entry; the retry completes the index.
    retry = RecordStore(LocalStore(tmp_path / "store"))
    assert run_records(LocalStore(tmp_path / "store"), "run-1") == []
    digest = retry.write(envelope, record.asset.digest, "run-1")
    assert run_records(LocalStore(tmp_path / "store"), "run-1") == [(record.asset.digest, digest)]


# --- S3: the same semantics on SeaweedFS, and Object Lock ------------------------------


@pytest.mark.s3
def test_record_store_on_s3(s3_env, signer, public_keys):
    bucket = S3Store(s3_env.make_bucket())
    records = RecordStore(bucket)
    record = make_record(signer)
    envelope = sign_record(record, signer)
    digest = records.write(envelope, record.asset.digest, "run-1")
    assert records.write(envelope, record.asset.digest, "run-1") == digest
    assert records.exists(record.asset.digest)
    assert verify_record(records.read(record.asset.digest), public_keys) == record
    assert run_records(bucket, "run-1") == [(record.asset.digest, digest)]
    rival = sign_record(make_record(signer, task_run_id="task-2"), signer)
    with pytest.raises(WriteConflict, match=record_key(record.asset.digest)):
        records.write(rival, record.asset.digest, "run-1")


def error_code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


@pytest.mark.s3
def test_object_lock_keeps_every_written_record(s3_env, signer, public_keys):
    client = s3_env.client()
    bucket = f"locked-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    enable_object_lock(client, bucket, days=1)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    record = make_record(signer)
    envelope = sign_record(record, signer)
    records = RecordStore(S3Store(bucket))
    records.write(envelope, record.asset.digest, "run-1")
    key = record_key(record.asset.digest)
    (original,) = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    version = original["VersionId"]
    retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version)
    assert retention["Retention"]["Mode"] == "COMPLIANCE"

    # Write-once still holds at the key: the conditional put is refused.
    rival = sign_record(make_record(signer, task_run_id="task-2"), signer)
    with pytest.raises(WriteConflict):
        records.write(rival, record.asset.digest, "run-1")

    # The locked version cannot be deleted, not even with a governance bypass ...
    for bypass in ({}, {"BypassGovernanceRetention": True}):
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version, **bypass)
        assert error_code(refused) == "AccessDenied"
    # ... nor its COMPLIANCE retention (a day) shortened or weakened.
    sooner = datetime.now(UTC) + timedelta(minutes=5)
    for mode in ("COMPLIANCE", "GOVERNANCE"):
        with pytest.raises(ClientError) as refused:
            client.put_object_retention(
                Bucket=bucket,
                Key=key,
                VersionId=version,
                Retention={"Mode": mode, "RetainUntilDate": sooner},
            )
        assert error_code(refused) == "AccessDenied"

    # A plain overwrite lands as a new version: readers of the key see the forgery,
    # the signature check catches it, and the original stays retrievable.
    client.put_object(Bucket=bucket, Key=key, Body=flip_payload_byte(envelope))
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_record(records.read(record.asset.digest), public_keys)
    kept = client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert kept == envelope
    assert verify_record(kept, public_keys) == record

    # A plain delete only adds a delete marker.
    assert client.delete_object(Bucket=bucket, Key=key)["DeleteMarker"]
    assert not records.exists(record.asset.digest)
    assert client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == envelope


@pytest.mark.s3
def test_object_lock_needs_a_bucket_created_with_it(s3_env):
    client = s3_env.client()
    bucket = s3_env.make_bucket()
    with pytest.raises(ClientError) as refused:
        enable_object_lock(client, bucket, days=1)
    assert error_code(refused) == "InvalidBucketState"
