"""The factory's signing identity: Ed25519 lineage keys and a C2PA certificate chain.

Private material lives only in ``keys_dir`` (default ``$FACTORY_HOME/keys``, mode 0700)::

    lineage-<key_id>.key   Ed25519 private key, PKCS#8 PEM, mode 0600 (one per key ever made)
    active                 the key id that signs new records
    c2pa-root.pem          the C2PA root certificate (the trust anchor verifiers pin)
    c2pa-leaf.pem          the C2PA signing certificate chain, as the chain maker gives it
    c2pa-leaf.key          the C2PA leaf's private key, mode 0600
    c2pa-alg               the C2PA signing algorithm the chain was made for (es256)

A key id is the SHA-256 (hex) of the raw 32-byte Ed25519 public key, so anyone can
recompute it from the public key alone. Public halves are published to the object
store, write-once, under ``keys/lineage/<key_id>.pem`` and
``keys/c2pa/root-<sha256 of the PEM>.pem``: a verifier needs nothing but the store.
Rotation makes a new key active and keeps the old ones (published and on disk), so
records signed before still verify; an inactive key never signs again.
"""

import contextlib
import hashlib
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
from media.certificates import CertificateChain, make_certificate_chain
from storage.objectstore import ObjectStore, write_once

LINEAGE_PREFIX = "keys/lineage/"
C2PA_PREFIX = "keys/c2pa/"
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


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw 32-byte public key."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def init(keys_dir: Path, common_name: str = DEFAULT_COMMON_NAME) -> tuple[str, bool]:
    """Create the lineage key and the C2PA chain where absent; (active key id, created a key)."""
    keys_dir = _prepare_dir(keys_dir)
    if not (keys_dir / C2PA_ROOT).exists():
        _create_c2pa_chain(keys_dir, common_name)
    current = _read_active(keys_dir)
    if current is not None:
        _load_private(keys_dir, current)
        return current, False
    new_id = _create_key(keys_dir)
    # Linking "active" is write-once: of two concurrent inits, exactly one key wins.
    if _write_private(keys_dir / _ACTIVE, f"{new_id}\n".encode(), replace=False):
        return new_id, True
    (keys_dir / f"lineage-{new_id}.key").unlink()
    winner = _read_active(keys_dir)
    assert winner is not None, "the active file exists: linking it just failed"
    return winner, False


def rotate(keys_dir: Path) -> str:
    """Make a new key active; older keys stay on disk for publishing but never sign again."""
    keys_dir = _prepare_dir(keys_dir)
    new_id = _create_key(keys_dir)
    _write_private(keys_dir / _ACTIVE, f"{new_id}\n".encode(), replace=True)
    return new_id


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
    """Publish every local public key (and the C2PA root) write-once; the lineage key ids."""
    published = []
    for each in local_key_ids(keys_dir):
        pem = public_pem(_load_private(keys_dir, each).public_key())
        _put_once(store, f"{LINEAGE_PREFIX}{each}.pem", pem)
        published.append(each)
    root = keys_dir / C2PA_ROOT
    if root.exists():
        pem = root.read_bytes()
        _put_once(store, f"{C2PA_PREFIX}root-{hashlib.sha256(pem).hexdigest()}.pem", pem)
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
        if hashlib.sha256(pem).hexdigest() != match.group(1):
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
    # Errors from parsing are replaced, never chained: they could quote the key's bytes.
    private = None
    with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
        private = load_pem_private_key(data, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise FactoryError(f"{path} is not an unencrypted Ed25519 private key in PEM.")
    if key_id(private.public_key()) != wanted:
        raise IntegrityError(f"{path} holds a different key than its name says.")
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
