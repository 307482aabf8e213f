"""What a verifier trusts: the factory root it holds, and the keys that root certified.

The store may hold any key (a compromised worker or a leaked bucket credential can add
files under ``keys/``), so a published key proves nothing by being there. A verifier
pins the root (a fingerprint, or the root's public key as a trust file) and believes a
lineage key or a C2PA root certificate only when a statement signed by that root
certifies it. A key retired by statement still verifies what it signed. A key found in
the store with no statement is reported by id as untrusted.

Where the anchor comes from, first match wins: ``--trust`` (or ``FACTORY_TRUST``), then
the local factory's own root in its keys directory.
"""

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from factory.errors import BadInput, FactoryError, IntegrityError, ObjectNotFound
from factory.key_statements import fingerprint, lineage_public_key, read_statement
from storage import keys
from storage.objectstore import ObjectStore

_FINGERPRINT = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_TRUST_HINT = (
    "pass --trust with the factory root's fingerprint or its trust file (print them on the "
    "factory with `factory keys trust`), or set FACTORY_TRUST"
)


@dataclass(frozen=True)
class TrustAnchor:
    """The root a verifier believes: its fingerprint, and its public key when held locally."""

    fingerprint: str
    public_key: Ed25519PublicKey | None = None

    def root_key(self, store: ObjectStore) -> Ed25519PublicKey:
        """The root's public key: held, or the store's copy once it matches the fingerprint."""
        if self.public_key is not None:
            return self.public_key
        key = f"{keys.ROOT_PREFIX}{self.fingerprint}.pem"
        try:
            public = _ed25519(store.get(key), store.uri(key))
        except ObjectNotFound:
            raise IntegrityError(
                f"{store.url} does not publish the trusted root {self.fingerprint}: this store "
                "was not written by that factory, or pass --trust with the root's trust file"
            ) from None
        if fingerprint(public) != self.fingerprint:
            raise IntegrityError(
                f"{store.uri(key)} holds a key with fingerprint {fingerprint(public)}, not "
                f"the trusted {self.fingerprint}: the published root was swapped"
            )
        return public


def parse_anchor(spec: str) -> TrustAnchor:
    """A trust anchor from a fingerprint (hex, optionally ``sha256:``) or a trust file."""
    text = spec.strip()
    if match := _FINGERPRINT.fullmatch(text.lower()):
        return TrustAnchor(match.group(1))
    path = Path(text).expanduser()
    if not path.is_file():
        raise BadInput(
            f"--trust {spec!r} is neither a root fingerprint (64 hex digits) nor a trust file"
        )
    public = _ed25519(path.read_bytes(), str(path))
    return TrustAnchor(fingerprint(public), public)


def local_anchor(keys_dir: Path) -> TrustAnchor | None:
    """The local factory's own root, or None where no factory made its keys here."""
    pem = keys.root_public_pem(keys_dir)
    if pem is None:
        return None
    public = _ed25519(pem, str(keys_dir / keys.ROOT_KEY))
    return TrustAnchor(fingerprint(public), public)


def resolve_anchor(spec: str | None, keys_dir: Path) -> TrustAnchor:
    """The anchor ``spec`` names, else the local factory's root; a teaching error if none."""
    if spec:
        return parse_anchor(spec)
    anchor = local_anchor(keys_dir)
    if anchor is None:
        raise FactoryError(
            f"No trust anchor: there is no factory root in {keys_dir}; {_TRUST_HINT}."
        )
    return anchor


@dataclass(frozen=True)
class TrustedKeys:
    """The keys a verifier accepts, all certified by ``root``; ``untrusted`` are the key ids
    the store publishes that no statement of the root certifies."""

    root: str
    lineage: Mapping[str, Ed25519PublicKey]
    retired: frozenset[str]
    c2pa_roots: tuple[bytes, ...]
    untrusted: frozenset[str]

    def status(self, key_id: str) -> str:
        if key_id in self.lineage:
            return "retired" if key_id in self.retired else "certified"
        return "untrusted"

    def why_untrusted(self, key_ids: Iterable[str]) -> str:
        """Why records signed by ``key_ids`` are not the factory's, naming each key."""
        reasons = []
        for each in key_ids:
            where = (
                "published in the store without a statement from the root"
                if each in self.untrusted
                else "not published by the root at all"
            )
            reasons.append(f"untrusted key {each} ({where})")
        return (
            f"signed by {', '.join(reasons)}; only keys certified by the trusted root "
            f"{self.root} count"
        )


def load_trusted_keys(store: ObjectStore, anchor: TrustAnchor) -> TrustedKeys:
    """Read the root's statements from ``store`` and keep the keys they certify.

    A statement that does not verify under the root is an attack or damage: it raises.
    Statements by other roots (another factory sharing the bucket) are ignored.
    """
    root = anchor.root_key(store)
    lineage: dict[str, Ed25519PublicKey] = {}
    retired: set[str] = set()
    c2pa_roots: list[bytes] = []
    for key in store.list(f"{keys.STATEMENTS_PREFIX}{anchor.fingerprint}/"):
        try:
            statement = read_statement(store.get(key), root)
        except IntegrityError as error:
            raise IntegrityError(
                f"{store.uri(key)}: {error}; delete it and republish with `factory keys init`"
            ) from None
        if statement.statement == "retire":
            retired.add(statement.key_id)
        elif statement.kind == "lineage":
            lineage[statement.key_id] = lineage_public_key(statement)
        else:
            c2pa_roots.append((statement.public_key or "").encode("ascii"))
    published = {
        key.removeprefix(keys.LINEAGE_PREFIX).removesuffix(".pem")
        for key in store.list(keys.LINEAGE_PREFIX)
    }
    return TrustedKeys(
        root=anchor.fingerprint,
        lineage=lineage,
        retired=frozenset(retired & lineage.keys()),
        c2pa_roots=tuple(c2pa_roots),
        untrusted=frozenset(published - lineage.keys()),
    )


def _ed25519(pem: bytes, where: str) -> Ed25519PublicKey:
    public = None
    with contextlib.suppress(ValueError, UnsupportedAlgorithm):
        public = load_pem_public_key(pem)
    if not isinstance(public, Ed25519PublicKey):
        raise BadInput(f"{where} is not an Ed25519 public key in PEM (a factory trust file)")
    return public
