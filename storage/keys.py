"""The factory's signing identity: Ed25519 lineage keys and a C2PA certificate chain.

Private material lives only in ``keys_dir`` (default ``$FACTORY_HOME/keys``, mode 0700)::

    root.key               the factory root: Ed25519, signs only key statements (mode 0600)
    statements/            the root's signed statements: which keys it certified or retired
    lineage-<key_id>.key   Ed25519 private key, PKCS#8 PEM, mode 0600 (one per key ever made)
    active                 the key id that signs new records
    c2pa-root.pem          the C2PA root certificate (certified by the factory root)
    c2pa-leaf.pem          the C2PA signing certificate chain, as the chain maker gives it
    c2pa-leaf.key          the C2PA leaf's private key, mode 0600
    c2pa-alg               the C2PA signing algorithm the chain was made for (es256)

A key id is the SHA-256 (hex) of the raw 32-byte Ed25519 public key, so anyone can
recompute it from the public key alone; the root's fingerprint is its key id. Public
halves are published to the object store, write-once: ``keys/root/<fingerprint>.pem``,
``keys/statements/<fingerprint>/<statement>``, ``keys/lineage/<key_id>.pem`` and
``keys/c2pa/root-<sha256 of the PEM>.pem``. The store is a convenience, not the
authority: a verifier believes a key only because a root statement certifies it (see
``storage.trust``). Rotation makes a new key active, certifies it and retires the old
one by statement; the old keys stay (published and on disk), so records signed before
still verify, and a retired key never signs again.
"""

import contextlib
import os
import re
import uuid
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib.signer import CryptoSigner, SSlibKey

from factory.errors import FactoryError, IntegrityError
from factory.key_statements import (
    KeyStatement,
    c2pa_root_id,
    fingerprint,
    make_statement,
    sign_statement,
)
from media.certificates import CertificateChain, make_certificate_chain
from storage.objectstore import ObjectStore, write_once

LINEAGE_PREFIX = "keys/lineage/"
C2PA_PREFIX = "keys/c2pa/"
ROOT_PREFIX = "keys/root/"
STATEMENTS_PREFIX = "keys/statements/"
ROOT_KEY = "root.key"
STATEMENTS = "statements"
C2PA_ROOT = "c2pa-root.pem"
C2PA_LEAF = "c2pa-leaf.pem"
C2PA_LEAF_KEY = "c2pa-leaf.key"
C2PA_ALG = "c2pa-alg"
DEFAULT_COMMON_NAME = "Asset Factory"

_ACTIVE = "active"
_KEY_ID = re.compile(r"[0-9a-f]{64}")
_PRIVATE_FILE = re.compile(r"lineage-([0-9a-f]{64})\.key")
_PUBLIC_KEY = re.compile(re.escape(LINEAGE_PREFIX) + r"([0-9a-f]{64})\.pem")
_C2PA_ROOT_KEY = re.compile(re.escape(C2PA_PREFIX) + r"root-([0-9a-f]{64})\.pem")
_INIT_HINT = "run `factory keys init` to create the factory's keys"


class LineageSigner(CryptoSigner):
    """An Ed25519 securesystemslib signer whose key id is ours (SHA-256 of the raw public key).

    It prints as its key id only: the private key must never reach a log or a traceback.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        public = private_key.public_key()
        super().__init__(private_key, SSlibKey.from_crypto(public, key_id(public), "ed25519"))

    @property
    def key_id(self) -> str:
        return self.public_key.keyid

    @property
    def public_pem(self) -> bytes:
        return public_pem(self._private_key.public_key())

    def __repr__(self) -> str:
        # str() falls back to this too.
        return f"LineageSigner(key_id={self.key_id!r})"


key_id = fingerprint


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def init(keys_dir: Path, common_name: str = DEFAULT_COMMON_NAME) -> tuple[str, bool]:
    """Create the root, the lineage key and the C2PA chain where absent, and have the root
    certify them; (active key id, created a key).

    A keys directory made before the root existed gets one here, which certifies the keys
    already there, so what they signed verifies against the new root.
    """
    keys_dir = _prepare_dir(keys_dir)
    if not (keys_dir / C2PA_ROOT).exists():
        _create_c2pa_chain(keys_dir, common_name)
    current = _read_active(keys_dir)
    if current is not None:
        _load_private(keys_dir, current)
        _certify_all(keys_dir)
        return current, False
    new_id = _create_key(keys_dir)
    # Linking "active" is write-once: of two concurrent inits, exactly one key wins.
    if _write_private(keys_dir / _ACTIVE, f"{new_id}\n".encode(), replace=False):
        _certify_all(keys_dir)
        return new_id, True
    (keys_dir / f"lineage-{new_id}.key").unlink()
    winner = _read_active(keys_dir)
    assert winner is not None, "the active file exists: linking it just failed"
    _certify_all(keys_dir)
    return winner, False


def rotate(keys_dir: Path) -> str:
    """Make a new key active, certified; the old ones are retired by statement, never sign
    again, and stay on disk for publishing so what they signed still verifies."""
    keys_dir = _prepare_dir(keys_dir)
    new_id = _create_key(keys_dir)
    # Certified before it becomes active: no record is ever signed by an uncertified key.
    _certify_all(keys_dir, active=new_id)
    _write_private(keys_dir / _ACTIVE, f"{new_id}\n".encode(), replace=True)
    return new_id


def root_fingerprint(keys_dir: Path) -> str | None:
    """The fingerprint of the factory root in ``keys_dir``, or None before `init`."""
    root = _load_root(keys_dir)
    return fingerprint(root.public_key()) if root is not None else None


def root_public_pem(keys_dir: Path) -> bytes | None:
    """The factory root's public key (the trust file verifiers pin), or None before `init`."""
    root = _load_root(keys_dir)
    return public_pem(root.public_key()) if root is not None else None


def local_statements(keys_dir: Path) -> list[tuple[str, bytes]]:
    """(file name, signed envelope) of every statement the root made here."""
    folder = keys_dir / STATEMENTS
    if not folder.is_dir():
        return []
    return sorted(
        (path.name, path.read_bytes())
        for path in folder.iterdir()
        if path.name.endswith(".dsse.json")
    )


def active_key_id(keys_dir: Path) -> str | None:
    """The key id that signs new records, or None before `init`."""
    return _read_active(keys_dir)


def local_key_ids(keys_dir: Path) -> list[str]:
    """Every lineage key id with a private key in keys_dir, active or not."""
    if not keys_dir.is_dir():
        return []
    return sorted(
        match.group(1)
        for path in keys_dir.iterdir()
        if (match := _PRIVATE_FILE.fullmatch(path.name))
    )


def load_signer(keys_dir: Path) -> LineageSigner:
    """The signer for the active key."""
    current = _read_active(keys_dir)
    if current is None:
        raise FactoryError(f"No lineage signing key in {keys_dir}: {_INIT_HINT}.")
    return LineageSigner(_load_private(keys_dir, current))


def load_c2pa_chain(keys_dir: Path) -> CertificateChain:
    """The C2PA signing chain and its private key, as `init` stored them."""
    try:
        return CertificateChain(
            root_cert_pem=(keys_dir / C2PA_ROOT).read_bytes(),
            leaf_cert_pem=(keys_dir / C2PA_LEAF).read_bytes(),
            leaf_key_pem=(keys_dir / C2PA_LEAF_KEY).read_bytes(),
            alg=(keys_dir / C2PA_ALG).read_text().strip(),
        )
    except FileNotFoundError as err:
        raise FactoryError(
            f"The C2PA signing chain in {keys_dir} is incomplete ({Path(err.filename).name} "
            f"is missing): {_INIT_HINT}."
        ) from None


def publish_public_keys(keys_dir: Path, store: ObjectStore) -> list[str]:
    """Publish the root, its statements and every local public key (and the C2PA root)
    write-once; the lineage key ids."""
    root = root_public_pem(keys_dir)
    if root is not None:
        root_id = root_fingerprint(keys_dir)
        _put_once(store, f"{ROOT_PREFIX}{root_id}.pem", root)
        for name, envelope in local_statements(keys_dir):
            _put_once(store, f"{STATEMENTS_PREFIX}{root_id}/{name}", envelope)
    published = []
    for each in local_key_ids(keys_dir):
        pem = public_pem(_load_private(keys_dir, each).public_key())
        _put_once(store, f"{LINEAGE_PREFIX}{each}.pem", pem)
        published.append(each)
    c2pa_root = keys_dir / C2PA_ROOT
    if c2pa_root.exists():
        pem = c2pa_root.read_bytes()
        _put_once(store, f"{C2PA_PREFIX}root-{c2pa_root_id(pem)}.pem", pem)
    return published


def load_public_keys(store: ObjectStore) -> dict[str, Ed25519PublicKey]:
    """Every published lineage public key by key id, each checked against its id."""
    keys = {}
    for key in store.list(LINEAGE_PREFIX):
        match = _PUBLIC_KEY.fullmatch(key)
        if match is None:
            continue
        where = store.uri(key)
        try:
            public = load_pem_public_key(store.get(key))
        except (ValueError, UnsupportedAlgorithm):
            raise IntegrityError(f"{where} is not a PEM public key.") from None
        if not isinstance(public, Ed25519PublicKey):
            raise IntegrityError(f"{where} is not an Ed25519 public key.")
        if key_id(public) != match.group(1):
            raise IntegrityError(
                f"{where} holds the key with id {key_id(public)}, not {match.group(1)}: the "
                "published key file was swapped or altered; restore it from the factory's keys."
            )
        keys[match.group(1)] = public
    return keys


def load_c2pa_roots(store: ObjectStore) -> list[bytes]:
    """Every published C2PA root certificate (PEM), each checked against its digest."""
    roots = []
    for key in store.list(C2PA_PREFIX):
        match = _C2PA_ROOT_KEY.fullmatch(key)
        if match is None:
            continue
        pem = store.get(key)
        if c2pa_root_id(pem) != match.group(1):
            raise IntegrityError(
                f"{store.uri(key)} does not hash to the digest in its name: the published "
                "C2PA root was altered; restore it from the factory's keys."
            )
        roots.append(pem)
    return roots


def _prepare_dir(keys_dir: Path) -> Path:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    os.chmod(keys_dir, 0o700)
    return keys_dir


def _load_root(keys_dir: Path) -> Ed25519PrivateKey | None:
    path = keys_dir / ROOT_KEY
    if not path.exists():
        return None
    return _parse_private(path, path.read_bytes())


def _ensure_root(keys_dir: Path) -> LineageSigner:
    """The root's signer, made on first use; of two concurrent makers, one root wins."""
    root = _load_root(keys_dir)
    if root is None:
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        _write_private(keys_dir / ROOT_KEY, pem, replace=False)
        root = _load_root(keys_dir)
        assert root is not None, "root.key exists: it was just linked"
    return LineageSigner(root)


def _certify_all(keys_dir: Path, active: str | None = None) -> None:
    """Have the root certify every local key and the C2PA root, and retire inactive keys.

    Each statement is made once and kept, so every store it is published to gets the
    same bytes.
    """
    active = active or _read_active(keys_dir)
    wanted: list[KeyStatement] = []
    root = _ensure_root(keys_dir)
    for each in local_key_ids(keys_dir):
        pem = public_pem(_load_private(keys_dir, each).public_key())
        wanted.append(make_statement("certify", "lineage", each, root.key_id, pem))
        if each != active:
            wanted.append(make_statement("retire", "lineage", each, root.key_id))
    c2pa_root = keys_dir / C2PA_ROOT
    if c2pa_root.exists():
        pem = c2pa_root.read_bytes()
        wanted.append(make_statement("certify", "c2pa-root", c2pa_root_id(pem), root.key_id, pem))
    folder = keys_dir / STATEMENTS
    folder.mkdir(mode=0o700, exist_ok=True)
    for statement in wanted:
        if not (folder / statement.name).exists():
            _write_private(folder / statement.name, sign_statement(statement, root), replace=False)


def _create_key(keys_dir: Path) -> str:
    private = Ed25519PrivateKey.generate()
    new_id = key_id(private.public_key())
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_private(keys_dir / f"lineage-{new_id}.key", pem, replace=False)
    return new_id


def _create_c2pa_chain(keys_dir: Path, common_name: str) -> None:
    chain = make_certificate_chain(common_name)
    # The root goes last: its presence is what marks the chain complete.
    _write_private(keys_dir / C2PA_LEAF_KEY, chain.leaf_key_pem, replace=True)
    _write_private(keys_dir / C2PA_LEAF, chain.leaf_cert_pem, replace=True)
    _write_private(keys_dir / C2PA_ALG, chain.alg.encode(), replace=True)
    _write_private(keys_dir / C2PA_ROOT, chain.root_cert_pem, replace=True)


def _write_private(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write data to path, mode 0600 from the first byte on; False if not replacing and present."""
    temp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            # A umask can narrow 0600 further (say to 0400); pin it exactly.
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)


def _read_active(keys_dir: Path) -> str | None:
    try:
        text = (keys_dir / _ACTIVE).read_text().strip()
    except FileNotFoundError:
        return None
    if not _KEY_ID.fullmatch(text):
        raise FactoryError(
            f"{keys_dir / _ACTIVE} does not name a key id; write one of "
            f"{', '.join(local_key_ids(keys_dir)) or '(none)'} into it, or {_INIT_HINT}."
        )
    return text


def _load_private(keys_dir: Path, wanted: str) -> Ed25519PrivateKey:
    path = keys_dir / f"lineage-{wanted}.key"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FactoryError(
            f"The lineage key {wanted} is missing from {keys_dir}: restore {path.name} from a "
            "backup, or run `factory keys rotate` to sign with a new key."
        ) from None
    private = _parse_private(path, data)
    if key_id(private.public_key()) != wanted:
        raise IntegrityError(f"{path} holds a different key than its name says.")
    return private


def _parse_private(path: Path, data: bytes) -> Ed25519PrivateKey:
    # Errors from parsing are replaced, never chained: they could quote the key's bytes.
    private = None
    with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
        private = load_pem_private_key(data, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise FactoryError(f"{path} is not an unencrypted Ed25519 private key in PEM.")
    return private


def _put_once(store: ObjectStore, key: str, data: bytes) -> None:
    write_once(
        store,
        key,
        data,
        "application/x-pem-file",
        "a published key is never replaced. Check who wrote it before trusting records "
        "signed under that name.",
    )
