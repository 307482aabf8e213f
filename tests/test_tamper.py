"""The tamper matrix: every alteration of a produced order is detected with a precise reason."""

import base64
import json
import shutil
from pathlib import Path

import pytest

from factory.lineage import record_digest, sign_record, verify_record
from factory.orders import load_order
from factory.settings import Settings
from flows.produce import produce
from media.video import concat_mp4, decode_frames
from storage import keys
from storage.assets import asset_key
from storage.lineage import RecordStore, record_key
from storage.local import LocalStore
from storage.trust import load_trusted_keys, local_anchor
from storage.verification import verify
from tests.trusted import forge_chain, local_trust

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def produced(tmp_path_factory, prefect_server, factory_home):
    import os

    os.environ["FACTORY_HOME"] = str(factory_home)
    root = tmp_path_factory.mktemp("tamper") / "store"
    delivery = produce(load_order(EXAMPLES / "tiny.yaml"), str(root))
    return root, delivery


@pytest.fixture
def store(produced, tmp_path):
    root, delivery = produced
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    return LocalStore(copy), delivery


def _ancestors(store: LocalStore, digest: str) -> dict[str, list[str]]:
    """Digests by stage for the deliverable's whole graph."""
    public = keys.load_public_keys(store)
    records = RecordStore(store)
    found: dict[str, list[str]] = {}
    pending = [digest]
    while pending:
        current = pending.pop()
        record = verify_record(records.read(current), public)
        if current not in found.setdefault(record.stage.name, []):
            found[record.stage.name].append(current)
        pending.extend(parent.digest for parent in record.parents)
    return found


def _path(store: LocalStore, key: str) -> Path:
    return Path(store.uri(key).removeprefix("file://"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_untouched_run_verifies_clean(store):
    store, delivery = store
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert report.verified, report.problems
    assert report.problems == []
    stages = _ancestors(store, delivery.deliverable.digest)
    assert {stage: len(digests) for stage, digests in stages.items()} == {
        "assemble": 1,
        "gate": 2,
        "encode": 2,
        "composite": 2,
        "render": 2,
        "ingest": 1,
    }


def test_media_byte_flipped_in_the_deliverable(store):
    store, delivery = store
    data = bytearray(store.get(delivery.deliverable.key))
    data[data.index(b"mdat") + 200] ^= 0x01
    report = verify(store, local_trust(store), data=bytes(data))
    assert not report.verified
    assert any("bmffHash.mismatch" in problem for problem in report.problems)
    assert any("no lineage record" in problem for problem in report.problems)


def test_manifest_byte_flipped_in_the_deliverable(store):
    store, delivery = store
    data = bytearray(store.get(delivery.deliverable.key))
    manifest = data.index(b"c2pa.signature")
    data[manifest + 40] ^= 0x01
    report = verify(store, local_trust(store), data=bytes(data))
    assert not report.verified
    assert any(problem.startswith("C2PA: ") for problem in report.problems)


def test_stored_deliverable_byte_flipped_and_verified_by_digest(store):
    # Asked by digest, the stored copy itself is the suspect: the report names it
    # as altered (it still has its record), and its manifest no longer matches.
    store, delivery = store
    digest = delivery.deliverable.digest
    path = _path(store, delivery.deliverable.key)
    data = path.read_bytes()
    _flip(path, data.index(b"mdat") + 200)
    report = verify(store, local_trust(store), digest=digest)
    assert not report.verified
    assert report.digest == digest
    assert report.tree.record_digest == delivery.record_digest
    assert f"asset {digest[:12]}: stored bytes hash to" in " ".join(report.problems)
    assert any("bmffHash.mismatch" in problem for problem in report.problems)


def test_stored_segment_byte_flipped(store):
    store, delivery = store
    segment = _ancestors(store, delivery.deliverable.digest)["encode"][0]
    _flip(_path(store, asset_key(segment)), 1000)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert f"asset {segment[:12]}: stored bytes hash to" in " ".join(report.problems)


def test_intermediate_byte_flipped(store):
    store, delivery = store
    composite = _ancestors(store, delivery.deliverable.digest)["composite"][1]
    _flip(_path(store, asset_key(composite)), 5000)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert f"asset {composite[:12]}: stored bytes hash to" in " ".join(report.problems)


def _rewrite_envelope(path: Path, change) -> None:
    envelope = json.loads(path.read_bytes())
    change(envelope)
    path.write_bytes(json.dumps(envelope).encode())


def test_record_payload_byte_flipped(store):
    store, delivery = store
    render = _ancestors(store, delivery.deliverable.digest)["render"][0]

    def flip_payload(envelope):
        payload = bytearray(base64.b64decode(envelope["payload"]))
        payload[payload.index(b'"seed":') + 7] ^= 0x01
        envelope["payload"] = base64.b64encode(bytes(payload)).decode()

    _rewrite_envelope(_path(store, record_key(render)), flip_payload)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert f"asset {render[:12]}: record rejected: bad signature" in " ".join(report.problems)


def test_record_signature_byte_flipped(store):
    store, delivery = store
    encode = _ancestors(store, delivery.deliverable.digest)["encode"][1]

    def flip_signature(envelope):
        signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        signature[10] ^= 0x01
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()

    _rewrite_envelope(_path(store, record_key(encode)), flip_signature)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert f"asset {encode[:12]}: record rejected: bad signature" in " ".join(report.problems)


def test_record_deleted(store):
    store, delivery = store
    composite = _ancestors(store, delivery.deliverable.digest)["composite"][0]
    store.delete(record_key(composite))
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert f"asset {composite[:12]}: no lineage record" in " ".join(report.problems)


def test_record_replaced_by_one_signed_with_an_unknown_key(store, tmp_path):
    store, delivery = store
    render = _ancestors(store, delivery.deliverable.digest)["render"][1]
    original = verify_record(RecordStore(store).read(render), keys.load_public_keys(store))
    keys.init(tmp_path / "intruder")
    intruder = keys.load_signer(tmp_path / "intruder")
    forged = original.model_copy(update={"key_id": intruder.key_id, "device_seconds": 0.0})
    _path(store, record_key(render)).write_bytes(sign_record(forged, intruder))
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    text = " ".join(report.problems)
    assert f"asset {render[:12]}:" in text
    assert f"untrusted key {intruder.key_id} (not published by the root at all)" in text
    assert "the record was replaced or altered" in text


def test_two_records_swapped(store):
    store, delivery = store
    first, second = _ancestors(store, delivery.deliverable.digest)["render"]
    path_a, path_b = _path(store, record_key(first)), _path(store, record_key(second))
    data_a, data_b = path_a.read_bytes(), path_b.read_bytes()
    path_a.write_bytes(data_b)
    path_b.write_bytes(data_a)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    text = " ".join(report.problems)
    assert f"describes asset {second}, not {first}" in text
    assert f"describes asset {first}, not {second}" in text


def test_manifest_stripped(store):
    store, delivery = store
    signed = store.get(delivery.deliverable.key)
    stripped = concat_mp4([signed], fragmented=False)
    assert (decode_frames(stripped) == decode_frames(signed)).all()
    report = verify(store, local_trust(store), data=stripped)
    assert not report.verified
    assert "C2PA: manifest missing" in report.problems


def test_intermediate_verified_by_digest_has_its_manifest_checked(store):
    store, delivery = store
    composite = _ancestors(store, delivery.deliverable.digest)["composite"][0]
    assert verify(store, local_trust(store), digest=composite).verified
    path = _path(store, asset_key(composite))
    data = path.read_bytes()
    _flip(path, data.index(b"c2pa.signature") + 40)
    report = verify(store, local_trust(store), digest=composite)
    assert not report.verified
    assert any(problem.startswith("C2PA: ") for problem in report.problems)


# --- Trust anchored outside the store ------------------------------------------------------


def _royalties_to(holder: str):
    def change(record):
        if record.model is None:
            return {}
        routing = [{"holder": holder, "share": 1.0}]
        return {"model": record.model.model_validate(
            {**record.model.model_dump(), "royalty_routing": routing})}  # fmt: skip

    return change


def test_a_key_planted_in_the_store_and_the_chain_re_signed_is_refused(store, tmp_path):
    # The attack: write access to the store, a key of one's own published under keys/,
    # every record of the deliverable re-signed with it so every hash link holds, and
    # the royalties routed to oneself.
    store, delivery = store
    keys.init(tmp_path / "intruder")
    keys.publish_public_keys(tmp_path / "intruder", store)
    intruder = keys.load_signer(tmp_path / "intruder")
    forge_chain(store, delivery.deliverable.digest, intruder, _royalties_to("intruder"))
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    text = " ".join(report.problems)
    assert f"untrusted key {intruder.key_id} (published in the store without a statement" in text
    # The manifest still names the genuine records, which no longer are the ones stored.
    assert "C2PA" not in text or "re-signed or replaced" in text


def test_a_record_re_signed_by_a_genuine_key_must_match_the_manifest(store):
    # A worker's lineage key (certified) without the C2PA key: the deliverable's record
    # drops a segment and re-links consistently. Only the manifest can tell.
    store, delivery = store
    signer = keys.load_signer(Settings().keys_dir)
    record = verify_record(
        RecordStore(store).read(delivery.deliverable.digest), local_trust(store).lineage
    )
    forged = record.model_copy(update={"parents": record.parents[:1]})
    _path(store, record_key(delivery.deliverable.digest)).write_bytes(sign_record(forged, signer))
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert any(
        problem.startswith("C2PA: the manifest says stage assemble")
        and "(the records were re-signed or replaced)" in problem
        for problem in report.problems
    ), report.problems


def test_a_deep_record_re_linked_by_a_genuine_key_is_caught_by_the_manifests(store):
    # Deeper down: a composite record re-signed (genuine key) to claim another render,
    # and everything above re-linked so every hash link holds.
    store, delivery = store
    stages = _ancestors(store, delivery.deliverable.digest)
    trusted = local_trust(store)
    records = RecordStore(store)
    signer = keys.load_signer(Settings().keys_dir)
    composite, other_render = stages["composite"][0], stages["render"][1]
    record = verify_record(records.read(composite), trusted.lineage)
    mine = record.parents[0]
    if mine.digest == other_render:
        other_render = stages["render"][0]
    forged = record.model_copy(
        update={
            "parents": [
                p if p.digest != mine.digest else p.model_copy(update={"digest": other_render,
                    "record_digest": record_digest(records.read(other_render))})
                for p in record.parents
            ]
        }
    )  # fmt: skip
    _path(store, record_key(composite)).write_bytes(sign_record(forged, signer))
    forge_chain(store, delivery.deliverable.digest, signer)
    report = verify(store, local_trust(store), digest=delivery.deliverable.digest)
    assert not report.verified
    assert report.problems == [
        problem
        for problem in report.problems
        if "(the records were re-signed or replaced)" in problem
    ]
    # Asked about the composite itself, its own manifest objects the same way.
    report = verify(store, local_trust(store), digest=composite)
    assert not report.verified
    assert any(problem.startswith("C2PA: the manifest says stage composite")
               for problem in report.problems), report.problems  # fmt: skip


def test_a_gate_verdict_re_signed_by_a_genuine_key_must_match_its_manifest(store):
    # The gate's record re-signed to claim another take: its manifest still says the first.
    store, delivery = store
    gate = _ancestors(store, delivery.deliverable.digest)["gate"][0]
    signer = keys.load_signer(Settings().keys_dir)
    record = verify_record(RecordStore(store).read(gate), local_trust(store).lineage)
    verdict = record.verdict.model_copy(update={"attempt": 2})
    forged = record.model_copy(update={"verdict": verdict})
    _path(store, record_key(gate)).write_bytes(sign_record(forged, signer))
    report = verify(store, local_trust(store), digest=gate)
    assert not report.verified
    assert report.problems == [
        "C2PA: the manifest asserts a quality verdict that differs from its lineage record's "
        "in attempt (one of them was altered)"
    ]


def test_a_rotated_key_still_verifies_old_deliverables(store, tmp_path):
    store, delivery = store
    keys_dir = tmp_path / "keys"
    shutil.copytree(Settings().keys_dir, keys_dir)
    old = keys.active_key_id(keys_dir)
    new = keys.rotate(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    assert trusted.status(old) == "retired"
    assert trusted.status(new) == "certified"
    report = verify(store, trusted, digest=delivery.deliverable.digest)
    assert report.verified, report.problems
