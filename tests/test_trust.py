"""Trust anchored outside the store: only keys the pinned root certified count."""

import json
import shutil
from pathlib import Path

import pytest

from factory.errors import BadInput, FactoryError, IntegrityError
from factory.key_statements import make_statement, read_statement, sign_statement
from factory.lineage import sign_record
from storage import keys
from storage.lineage import RecordStore
from storage.lineage_reader import LineageReader
from storage.local import LocalStore
from storage.trust import (
    TrustAnchor,
    load_trusted_keys,
    local_anchor,
    parse_anchor,
    resolve_anchor,
)
from tests.test_keys import record_for


@pytest.fixture
def factory(tmp_path: Path) -> tuple[Path, LocalStore]:
    keys_dir, store = tmp_path / "keys", LocalStore(tmp_path / "store")
    keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    return keys_dir, store


def store_record(store: LocalStore, signer: keys.LineageSigner, name: str) -> str:
    made = record_for(signer, name)
    RecordStore(store).write(sign_record(made, signer), made.asset.digest, "run")
    return made.asset.digest


def test_the_factory_root_certifies_its_keys(factory):
    keys_dir, store = factory
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    active = keys.active_key_id(keys_dir)
    assert trusted.root == keys.root_fingerprint(keys_dir)
    assert list(trusted.lineage) == [active]
    assert trusted.c2pa_roots == ((keys_dir / keys.C2PA_ROOT).read_bytes(),)
    assert trusted.untrusted == frozenset()
    digest = store_record(store, keys.load_signer(keys_dir), "genuine")
    assert LineageReader(store, trusted).read(digest).key_id == active


def test_a_key_added_to_the_store_is_untrusted_and_named(factory, tmp_path):
    keys_dir, store = factory
    # The attacker's own factory: its key published into our store, with its own root's
    # statements beside ours.
    keys.init(tmp_path / "intruder")
    keys.publish_public_keys(tmp_path / "intruder", store)
    intruder = keys.load_signer(tmp_path / "intruder")
    forged = store_record(store, intruder, "forged")

    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    assert intruder.key_id in trusted.untrusted
    assert trusted.status(intruder.key_id) == "untrusted"
    with pytest.raises(IntegrityError) as caught:
        LineageReader(store, trusted).read(forged)
    message = str(caught.value)
    assert f"untrusted key {intruder.key_id}" in message
    assert "published in the store without a statement from the root" in message
    assert trusted.root in message


def test_a_statement_not_signed_by_the_root_is_refused(factory, tmp_path):
    keys_dir, store = factory
    fingerprint = keys.root_fingerprint(keys_dir)
    keys.init(tmp_path / "intruder")
    intruder = keys.load_signer(tmp_path / "intruder")
    # A certify statement naming our root, signed by the intruder's key instead.
    claim = make_statement("certify", "lineage", intruder.key_id, fingerprint, intruder.public_pem)
    fake_root = keys.LineageSigner(intruder._private_key)
    fake_root.public_key.keyid = fingerprint
    store.put(
        f"keys/statements/{fingerprint}/lineage-{intruder.key_id}-certify.dsse.json",
        sign_statement(claim, fake_root),
    )
    with pytest.raises(IntegrityError, match="bad signature for root"):
        load_trusted_keys(store, local_anchor(keys_dir))


def test_a_statement_altered_after_signing_is_refused(factory):
    keys_dir, store = factory
    fingerprint = keys.root_fingerprint(keys_dir)
    (key,) = [k for k in store.list(f"keys/statements/{fingerprint}/") if "lineage-" in k]
    store.put(key, store.get(key).replace(b'"payload":"', b'"payload":"e30'))
    with pytest.raises(IntegrityError, match=key.split("/")[-1]):
        load_trusted_keys(store, local_anchor(keys_dir))


def test_a_swapped_root_fails(factory, tmp_path):
    keys_dir, store = factory
    keys.init(tmp_path / "other")
    other = keys.root_fingerprint(tmp_path / "other")
    # The verifier pins a root this store was never signed by.
    with pytest.raises(IntegrityError, match=f"does not publish the trusted root {other}"):
        load_trusted_keys(store, parse_anchor(f"sha256:{other}"))
    # The store's copy of our root replaced by another key under our fingerprint.
    ours = keys.root_fingerprint(keys_dir)
    store.put(f"keys/root/{ours}.pem", keys.root_public_pem(tmp_path / "other"))
    with pytest.raises(IntegrityError, match="published root was swapped"):
        load_trusted_keys(store, parse_anchor(ours))
    # Held locally (a trust file), the root does not depend on the store's copy at all.
    (tmp_path / "trust.pem").write_bytes(keys.root_public_pem(keys_dir))
    assert load_trusted_keys(store, parse_anchor(str(tmp_path / "trust.pem"))).root == ours


def test_a_foreign_root_trusts_none_of_our_keys(factory, tmp_path):
    keys_dir, store = factory
    keys.init(tmp_path / "other")
    keys.publish_public_keys(tmp_path / "other", store)
    theirs = load_trusted_keys(store, local_anchor(tmp_path / "other"))
    digest = store_record(store, keys.load_signer(keys_dir), "ours")
    with pytest.raises(IntegrityError, match=f"untrusted key {keys.active_key_id(keys_dir)}"):
        LineageReader(store, theirs).read(digest)


def test_anchor_specs(factory, tmp_path):
    keys_dir, _ = factory
    fingerprint = keys.root_fingerprint(keys_dir)
    assert parse_anchor(fingerprint) == TrustAnchor(fingerprint)
    assert parse_anchor(f"sha256:{fingerprint.upper()}").fingerprint == fingerprint
    with pytest.raises(BadInput, match="neither a root fingerprint"):
        parse_anchor("sha256:abc")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(BadInput, match="not an Ed25519 public key"):
        parse_anchor(str(tmp_path / "junk.pem"))
    assert resolve_anchor(None, keys_dir).fingerprint == fingerprint
    with pytest.raises(FactoryError, match=r"No trust anchor.*--trust"):
        resolve_anchor(None, tmp_path / "nowhere")


def test_keys_made_before_the_root_existed_are_certified_by_it(tmp_path):
    keys_dir, store = tmp_path / "keys", LocalStore(tmp_path / "store")
    keys.init(keys_dir)
    old = store_record(store, keys.load_signer(keys_dir), "old")
    # A keys directory as earlier versions left it: no root, no statements.
    (keys_dir / keys.ROOT_KEY).unlink()
    shutil.rmtree(keys_dir / keys.STATEMENTS)
    keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    assert LineageReader(store, trusted).read(old).key_id == keys.active_key_id(keys_dir)


def test_a_statement_checks_with_plain_securesystemslib(factory):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    keys_dir, store = factory
    fingerprint = keys.root_fingerprint(keys_dir)
    root = load_pem_public_key(store.get(f"keys/root/{fingerprint}.pem"))
    (key,) = [k for k in store.list(f"keys/statements/{fingerprint}/") if "lineage-" in k]
    envelope = Envelope.from_dict(json.loads(store.get(key)))
    assert envelope.verify([SSlibKey.from_crypto(root, fingerprint, "ed25519")], 1)
    assert read_statement(store.get(key), root).key_id == keys.active_key_id(keys_dir)
