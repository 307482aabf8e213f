"""The factory's signing identity: key files, publishing, rotation, and keeping secrets secret."""

import base64
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from typer.testing import CliRunner

from cli.keys import keys_app
from factory.errors import FactoryError, IntegrityError, WriteConflict
from factory.lineage import (
    AssetInfo,
    CodeInfo,
    LineageRecord,
    StageInfo,
    sign_record,
    verify_record,
)
from storage import keys
from storage.local import LocalStore
from storage.trust import load_trusted_keys, local_anchor


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def record_for(signer: keys.LineageSigner, name: str) -> LineageRecord:
    digest = hashlib.sha256(name.encode()).hexdigest()
    now = datetime.now(UTC)
    return LineageRecord(
        asset=AssetInfo(digest=digest, media_type="video/mp4", size=1, uri=f"file:///{digest}"),
        stage=StageInfo(name="render", version="1"),
        order_id="order",
        flow_run_id="run",
        task_run_id="task",
        device_class="cpu",
        device_seconds=0.0,
        started=now,
        ended=now,
        code=CodeInfo(package_version="0.1.0"),
        key_id=signer.key_id,
    )


def test_init_creates_private_files_unreadable_by_others(keys_dir):
    previous = os.umask(0o022)
    try:
        key_id, created = keys.init(keys_dir)
    finally:
        os.umask(previous)
    assert created
    assert mode(keys_dir) == 0o700
    assert (keys_dir / "active").read_text().strip() == key_id
    assert mode(keys_dir / f"lineage-{key_id}.key") == 0o600
    assert mode(keys_dir / keys.C2PA_LEAF_KEY) == 0o600
    assert mode(keys_dir / keys.ROOT_KEY) == 0o600
    assert not [p for p in keys_dir.iterdir() if p.name.startswith(".tmp-")]


def test_init_stores_the_c2pa_chain_it_was_given(keys_dir):
    keys.init(keys_dir)
    chain = keys.load_c2pa_chain(keys_dir)
    root = x509.load_pem_x509_certificate(chain.root_cert_pem)
    (leaf,) = x509.load_pem_x509_certificates(chain.leaf_cert_pem)
    leaf.verify_directly_issued_by(root)
    assert chain.alg == "es256"
    assert chain.leaf_key_pem == (keys_dir / keys.C2PA_LEAF_KEY).read_bytes()
    assert b"PRIVATE" not in repr(chain).encode()
    (keys_dir / keys.C2PA_LEAF).unlink()
    with pytest.raises(FactoryError, match=r"c2pa-leaf\.pem is missing"):
        keys.load_c2pa_chain(keys_dir)


def test_init_keeps_existing_keys(keys_dir):
    key_id, _ = keys.init(keys_dir)
    root = (keys_dir / keys.C2PA_ROOT).read_bytes()
    assert keys.init(keys_dir) == (key_id, False)
    assert (keys_dir / keys.C2PA_ROOT).read_bytes() == root
    assert keys.local_key_ids(keys_dir) == [key_id]


def test_init_tightens_an_existing_directory(keys_dir):
    keys_dir.mkdir(mode=0o755)
    os.chmod(keys_dir, 0o755)
    keys.init(keys_dir)
    assert mode(keys_dir) == 0o700


def test_key_id_is_sha256_of_the_raw_public_key(keys_dir):
    key_id, _ = keys.init(keys_dir)
    signer = keys.load_signer(keys_dir)
    raw = signer._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert len(raw) == 32
    assert signer.key_id == key_id == hashlib.sha256(raw).hexdigest()
    assert signer.public_key.keyid == key_id
    assert signer.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_private_key_never_shows_in_repr_or_str(keys_dir):
    key_id, _ = keys.init(keys_dir)
    signer = keys.load_signer(keys_dir)
    private = signer._private_key
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    secrets = [
        raw.hex(),
        base64.b64encode(raw).decode(),
        pem.decode(),
        pem.decode().splitlines()[1],
    ]
    shown = [repr(signer), str(signer), f"{signer}", f"{signer!r}", repr([signer])]
    assert repr(signer) == f"LineageSigner(key_id={key_id!r})"
    for text in shown:
        for secret in secrets:
            assert secret not in text


def test_errors_about_a_key_file_do_not_quote_it(keys_dir):
    key_id, _ = keys.init(keys_dir)
    # Another (valid) private key under this key's name.
    impostor = Ed25519PrivateKey.generate()
    pem = impostor.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path = keys_dir / f"lineage-{key_id}.key"
    path.write_bytes(pem)
    with pytest.raises(IntegrityError) as mismatch:
        keys.load_signer(keys_dir)
    path.write_bytes(pem[:60] + b"garbage" + pem[60:])
    with pytest.raises(FactoryError) as unreadable:
        keys.load_signer(keys_dir)
    for err in (mismatch, unreadable):
        text = f"{err.value} {err.value!r} {err.value.__cause__!r} {err.value.__context__!r}"
        assert pem.decode().splitlines()[1] not in text
        assert err.value.__cause__ is None


def test_no_keys_yet(keys_dir):
    with pytest.raises(FactoryError, match="factory keys init"):
        keys.load_signer(keys_dir)
    assert keys.active_key_id(keys_dir) is None
    assert keys.local_key_ids(keys_dir) == []


def test_publish_is_write_once_and_a_verifier_needs_only_the_store(keys_dir, store):
    key_id, _ = keys.init(keys_dir)
    assert keys.publish_public_keys(keys_dir, store) == [key_id]
    assert keys.publish_public_keys(keys_dir, store) == [key_id]
    pem = store.get(f"keys/lineage/{key_id}.pem")
    assert pem == keys.load_signer(keys_dir).public_pem
    assert b"PRIVATE" not in pem
    assert list(keys.load_public_keys(store)) == [key_id]
    root = (keys_dir / keys.C2PA_ROOT).read_bytes()
    assert keys.load_c2pa_roots(store) == [root]
    assert store.get(f"keys/c2pa/root-{hashlib.sha256(root).hexdigest()}.pem") == root
    published = set(store.list("keys/"))
    fingerprint = keys.root_fingerprint(keys_dir)
    c2pa_id = hashlib.sha256(root).hexdigest()
    assert published == {
        f"keys/root/{fingerprint}.pem",
        f"keys/lineage/{key_id}.pem",
        f"keys/c2pa/root-{c2pa_id}.pem",
        f"keys/statements/{fingerprint}/lineage-{key_id}-certify.dsse.json",
        f"keys/statements/{fingerprint}/c2pa-root-{c2pa_id}-certify.dsse.json",
    }
    assert not any(b"PRIVATE" in store.get(key) for key in published)


def test_a_different_key_already_published_under_our_id_conflicts(keys_dir, store):
    key_id, _ = keys.init(keys_dir)
    other = Ed25519PrivateKey.generate().public_key()
    store.put(f"keys/lineage/{key_id}.pem", keys.public_pem(other))
    with pytest.raises(WriteConflict, match=key_id):
        keys.publish_public_keys(keys_dir, store)


def test_swapped_public_key_file_is_an_integrity_error(keys_dir, store):
    key_id, _ = keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    other = Ed25519PrivateKey.generate().public_key()
    store.put(f"keys/lineage/{key_id}.pem", keys.public_pem(other))
    with pytest.raises(IntegrityError, match=f"not {key_id}"):
        keys.load_public_keys(store)
    store.put(f"keys/lineage/{key_id}.pem", b"not a key")
    with pytest.raises(IntegrityError, match="not a PEM public key"):
        keys.load_public_keys(store)


def test_altered_c2pa_root_is_an_integrity_error(keys_dir, store):
    keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    (key,) = store.list("keys/c2pa/")
    store.put(key, store.get(key) + b"\n")
    with pytest.raises(IntegrityError, match="C2PA root was altered"):
        keys.load_c2pa_roots(store)


def test_rotation_keeps_old_records_verifiable(keys_dir, store):
    old_id, _ = keys.init(keys_dir)
    old_signer = keys.load_signer(keys_dir)
    old_record = record_for(old_signer, "before")
    old_envelope = sign_record(old_record, old_signer)
    keys.publish_public_keys(keys_dir, store)

    new_id = keys.rotate(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    signer = keys.load_signer(keys_dir)
    assert new_id != old_id
    assert signer.key_id == new_id == keys.active_key_id(keys_dir)
    assert keys.local_key_ids(keys_dir) == sorted([old_id, new_id])
    assert mode(keys_dir / f"lineage-{new_id}.key") == 0o600

    public_keys = keys.load_public_keys(store)
    assert set(public_keys) == {old_id, new_id}
    new_record = record_for(signer, "after")
    assert verify_record(sign_record(new_record, signer), public_keys) == new_record
    assert verify_record(old_envelope, public_keys) == old_record
    # The root certified both and retired the old one by statement: both still verify.
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    assert set(trusted.lineage) == {old_id, new_id}
    assert trusted.status(old_id) == "retired"
    assert trusted.status(new_id) == "certified"
    assert verify_record(old_envelope, trusted.lineage) == old_record
    # init after a rotation keeps the rotated key active.
    assert keys.init(keys_dir) == (new_id, False)


def run_keys(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(keys_app, list(args), env={"COLUMNS": "250"})
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_cli_init_rotate_list(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACTORY_STORE", raising=False)
    keys_dir = tmp_path / "home" / "keys"
    store = LocalStore(tmp_path / "home" / "store")

    code, text = run_keys("init")
    key_id = keys.active_key_id(keys_dir)
    assert code == 0
    assert f"created lineage key {key_id}" in text
    assert str(keys_dir) in text
    code, text = run_keys("init")
    assert f"existing lineage key {key_id}" in text

    code, text = run_keys("rotate")
    new_id = keys.active_key_id(keys_dir)
    assert code == 0
    assert f"active lineage key is now {new_id}" in text
    assert set(keys.load_public_keys(store)) == {key_id, new_id}

    code, text = run_keys("list", "--store", str(tmp_path / "home" / "store"))
    assert code == 0
    lines = text.splitlines()
    assert any(key_id in line and "retired" in line for line in lines)
    assert any(new_id in line and "certified" in line and "active" in line for line in lines)
    assert "1 C2PA root certificate(s) certified by the root" in text

    code, text = run_keys("trust", "--out", str(tmp_path / "trust.pem"))
    assert code == 0
    assert f"sha256:{keys.root_fingerprint(keys_dir)}" in text
    assert (tmp_path / "trust.pem").read_bytes() == keys.root_public_pem(keys_dir)

    secrets = [p.read_text() for p in keys_dir.glob("*.key")]
    for secret in secrets:
        assert secret.splitlines()[1] not in text
        assert "PRIVATE" not in text


def test_cli_rotate_without_keys(tmp_path):
    result = CliRunner().invoke(
        keys_app, ["rotate", "--keys-dir", str(tmp_path / "k"), "--store", str(tmp_path / "s")]
    )
    assert "run `factory keys init` first" in str(result.exception)
