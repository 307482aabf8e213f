"""Lineage records: what produced an asset, from what, by whom, as a signed DSSE envelope.

A record is the predicate of an in-toto Statement v1 whose one subject is the asset.
The statement is serialized as RFC 8785 canonical JSON, wrapped in a DSSE envelope
(payloadType ``application/vnd.in-toto+json``) and signed with the factory's Ed25519
key; the envelope is canonical JSON too. Ed25519 signatures are deterministic, so one
record signed by one key always gives the same envelope bytes and the same
``record_digest``: parents point at records by that digest, which makes the records
a hash-linked graph. Any DSSE or in-toto tool verifies an envelope with the public
key published in the store (see ``storage.keys``).
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Signer, SSlibKey

from factory.assets import sha256_hex
from factory.errors import BadInput, IntegrityError, validation_problems
from factory.registry import ModelInfo
from factory.verdicts import Verdict

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://asset-factory.dev/lineage/v2"
# v2 added the quality verdict; v1 records (written before it) still verify.
PREDICATE_V1 = "https://asset-factory.dev/lineage/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Part(BaseModel):
    # Forbidding unknown fields makes a verifier reject what it cannot vouch for; a
    # predicate that grows fields gets a new PREDICATE_TYPE.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AssetInfo(_Part):
    digest: Digest
    media_type: str
    size: int = Field(ge=0)
    uri: str


class ParentLink(_Part):
    digest: Digest = Field(description="The input asset's digest")
    record_digest: Digest = Field(description="SHA-256 of the input asset's record envelope")


class StageInfo(_Part):
    name: str
    version: str


class CodeInfo(_Part):
    package_version: str
    git_commit: str | None = None


class LineageRecord(_Part):
    """The lineage predicate: one produced (or reused) asset and everything that made it."""

    asset: AssetInfo
    parents: list[ParentLink] = []
    stage: StageInfo
    order_id: str
    flow_run_id: str
    task_run_id: str
    model: ModelInfo | None = None
    parameters: dict[str, JsonValue] = Field(
        default={}, description="Every value that determined the output: seed, steps, sizes, crf…"
    )
    device_class: str
    device_seconds: float = Field(ge=0)
    started: AwareDatetime
    ended: AwareDatetime
    code: CodeInfo
    key_id: Digest = Field(description="The id of the key that signs this record")
    reused_from: Digest | None = Field(
        default=None, description="Record digest of the original when a cache reused the asset"
    )
    verdict: Verdict | None = Field(
        default=None, description="The quality gate's verdict on the asset (gate records only)"
    )

    @field_validator("started", "ended")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("started", "ended")
    def _iso(self, value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    @model_validator(mode="after")
    def _ordered(self) -> "LineageRecord":
        if self.ended < self.started:
            raise ValueError(f"ended ({self.ended}) is before started ({self.started})")
        return self


class _Subject(BaseModel):
    name: str
    digest: dict[str, str]


class _Statement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: list[_Subject] = Field(min_length=1, max_length=1)
    predicate_type: Literal[
        "https://asset-factory.dev/lineage/v1", "https://asset-factory.dev/lineage/v2"
    ] = Field(alias="predicateType")
    predicate: LineageRecord


class UnknownSigner(IntegrityError):
    """An envelope signed only by keys the verifier was not given."""

    def __init__(self, message: str, key_ids: list[str]) -> None:
        super().__init__(message)
        self.key_ids = key_ids


def statement(record: LineageRecord) -> dict[str, Any]:
    """The in-toto Statement v1 around a record, as plain JSON values."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": record.asset.uri, "digest": {"sha256": record.asset.digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": record.model_dump(mode="json"),
    }


def sign_record(record: LineageRecord, signer: Signer) -> bytes:
    """The record's DSSE envelope, signed by signer, as canonical JSON bytes."""
    if record.key_id != signer.public_key.keyid:
        raise ValueError(
            f"record names key {record.key_id} but the signer is {signer.public_key.keyid}"
        )
    try:
        payload = rfc8785.dumps(statement(record))
    except rfc8785.CanonicalizationError as err:
        raise BadInput(
            f"lineage record for {record.asset.digest} cannot be canonical JSON ({err}); "
            "parameters must be finite numbers, integers within ±2^53, strings, lists or objects"
        ) from None
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return rfc8785.dumps(envelope.to_dict())


def record_digest(envelope_bytes: bytes) -> str:
    """SHA-256 hex of the envelope bytes: the record's id in parent links and run indexes."""
    return sha256_hex(envelope_bytes)


def verify_record(
    envelope_bytes: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    expected_digest: str | None = None,
) -> LineageRecord:
    """The record inside a verified envelope; IntegrityError says exactly what failed.

    expected_digest, when given, is the asset the caller looked the record up by: a
    genuine record moved to another asset's key fails here.
    """
    envelope = _parse_envelope(envelope_bytes)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise IntegrityError(
            f"lineage envelope has payloadType {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}"
        )
    signer_id = _verify_signature(envelope, public_keys)
    record = _parse_statement(envelope.payload)
    if record.key_id != signer_id:
        raise IntegrityError(
            f"lineage record names key {record.key_id} but was signed by key {signer_id}"
        )
    if expected_digest is not None and record.asset.digest != expected_digest:
        raise IntegrityError(
            f"lineage record describes asset {record.asset.digest}, not {expected_digest}: "
            "it was stored under the wrong asset"
        )
    return record


def _parse_envelope(envelope_bytes: bytes) -> Envelope:
    try:
        data = json.loads(envelope_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"lineage record is not JSON: {err}") from None
    try:
        envelope = Envelope.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise IntegrityError(
            f"lineage record is not a DSSE envelope ({type(err).__name__}: {err}); it needs "
            "payload, payloadType and signatures [{keyid, sig}] with base64 payload and sig"
        ) from None
    if not envelope.signatures:
        raise IntegrityError("lineage envelope carries no signatures")
    return envelope


def _verify_signature(envelope: Envelope, public_keys: Mapping[str, Ed25519PublicKey]) -> str:
    """The id of a known key whose signature over the envelope verifies."""
    known = [
        SSlibKey.from_crypto(public_keys[keyid], keyid, "ed25519")
        for keyid in envelope.signatures
        if keyid in public_keys
    ]
    if not known:
        raise UnknownSigner(
            f"lineage record is signed by unknown key id(s) {', '.join(envelope.signatures)}; "
            f"the trusted keys are {', '.join(sorted(public_keys)) or 'none'}",
            list(envelope.signatures),
        )
    try:
        accepted = envelope.verify(known, 1)
    except VerificationError:
        raise IntegrityError(
            f"bad signature: key {', '.join(key.keyid for key in known)} did not sign these "
            "bytes; the lineage record was altered after signing"
        ) from None
    return next(iter(accepted))


def _parse_statement(payload: bytes) -> LineageRecord:
    try:
        parsed = _Statement.model_validate_json(payload)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, root="payload", limit=5))
        raise IntegrityError(
            f"lineage payload is not a valid {PREDICATE_TYPE} statement: {problems}"
        ) from None
    if parsed.predicate_type == PREDICATE_V1 and parsed.predicate.verdict is not None:
        raise IntegrityError(f"a {PREDICATE_V1} statement cannot carry a verdict")
    subject = parsed.subject[0].digest.get("sha256")
    if subject != parsed.predicate.asset.digest:
        raise IntegrityError(
            f"lineage statement's subject digest {subject} does not match its predicate's "
            f"asset digest {parsed.predicate.asset.digest}"
        )
    return parsed.predicate
