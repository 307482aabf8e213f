"""Key statements: the factory root's signed word on which keys speak for the factory.

The root is an Ed25519 key that signs nothing but these statements. A statement is a
DSSE envelope (payloadType ``STATEMENT_PAYLOAD_TYPE``) over RFC 8785 canonical JSON:

``certify`` a lineage key (Ed25519, its public PEM inside) or a C2PA root certificate
    (its PEM inside): records and manifests signed under it are the factory's.
``retire`` a lineage key: it signs nothing from ``issued_at`` on; what it signed before
    still verifies.

A verifier holds only the root's fingerprint (SHA-256 of its raw public key, the same
rule as lineage key ids) and believes a key because a statement it can check says so,
never because a file sits in the store. Any DSSE implementation checks a statement.
"""

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

import rfc8785
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Signer, SSlibKey

from factory.errors import IntegrityError, validation_problems

STATEMENT_PAYLOAD_TYPE = "application/vnd.asset-factory.key-statement+json"

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
StatementKind = Literal["certify", "retire"]
KeyKind = Literal["lineage", "c2pa-root"]


class KeyStatement(BaseModel):
    """What the root says about one key; ``public_key`` is the PEM a certify carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statement: StatementKind
    kind: KeyKind
    key_id: Digest
    public_key: str | None = None
    issued_at: AwareDatetime
    root: Digest

    @property
    def name(self) -> str:
        """The file name this statement is stored under, one per (kind, key, statement)."""
        return f"{self.kind}-{self.key_id}-{self.statement}.dsse.json"


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw 32-byte public key: a lineage key's id, the root's fingerprint."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def c2pa_root_id(pem: bytes) -> str:
    """A C2PA root certificate's id: SHA-256 hex of its PEM bytes."""
    return hashlib.sha256(pem).hexdigest()


def make_statement(
    statement: StatementKind,
    kind: KeyKind,
    key_id: str,
    root: str,
    public_key: bytes | None = None,
) -> KeyStatement:
    return KeyStatement(
        statement=statement,
        kind=kind,
        key_id=key_id,
        public_key=public_key.decode("ascii") if public_key is not None else None,
        issued_at=datetime.now(UTC),
        root=root,
    )


def sign_statement(statement: KeyStatement, root_signer: Signer) -> bytes:
    """The statement's DSSE envelope signed by the root, as canonical JSON bytes."""
    if statement.root != root_signer.public_key.keyid:
        raise ValueError(f"statement names root {statement.root}, signer is another key")
    envelope = Envelope(
        rfc8785.dumps(statement.model_dump(mode="json")), STATEMENT_PAYLOAD_TYPE, {}
    )
    envelope.sign(root_signer)
    return rfc8785.dumps(envelope.to_dict())


def read_statement(envelope_bytes: bytes, root: Ed25519PublicKey) -> KeyStatement:
    """The statement inside an envelope the root signed; IntegrityError names what failed."""
    root_id = fingerprint(root)
    try:
        envelope = Envelope.from_dict(json.loads(envelope_bytes))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise IntegrityError(f"key statement is not a DSSE envelope: {err}") from None
    if envelope.payload_type != STATEMENT_PAYLOAD_TYPE:
        raise IntegrityError(f"key statement has payloadType {envelope.payload_type!r}")
    if root_id not in envelope.signatures:
        raise IntegrityError(
            f"key statement is signed by {', '.join(envelope.signatures) or 'no key'}, "
            f"not by the trusted root {root_id}"
        )
    try:
        envelope.verify([SSlibKey.from_crypto(root, root_id, "ed25519")], 1)
    except VerificationError:
        raise IntegrityError(
            f"key statement carries a bad signature for root {root_id}: it was altered"
        ) from None
    try:
        statement = KeyStatement.model_validate_json(envelope.payload)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, root="statement", limit=5))
        raise IntegrityError(f"key statement is malformed: {problems}") from None
    if statement.root != root_id:
        raise IntegrityError(f"key statement names root {statement.root}, not {root_id}")
    if statement.statement == "certify":
        _check_certified_key(statement)
    return statement


def lineage_public_key(statement: KeyStatement) -> Ed25519PublicKey:
    """The Ed25519 key a lineage certify statement carries."""
    key = _load_public(statement)
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError(f"certified key {statement.key_id} is not an Ed25519 key")
    return key


def _load_public(statement: KeyStatement) -> object:
    try:
        return load_pem_public_key((statement.public_key or "").encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise IntegrityError(f"certified key {statement.key_id} is not a PEM public key") from None


def _check_certified_key(statement: KeyStatement) -> None:
    if statement.public_key is None:
        raise IntegrityError(f"certify statement for {statement.key_id} carries no key")
    if statement.kind == "lineage":
        actual = fingerprint(lineage_public_key(statement))
    else:
        actual = c2pa_root_id(statement.public_key.encode("ascii"))
    if actual != statement.key_id:
        raise IntegrityError(
            f"certify statement for {statement.key_id} carries the key {actual} instead"
        )
