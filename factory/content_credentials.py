"""Content Credentials (C2PA) for the factory's MP4s: the signing identity, signing, verifying.

Every MP4 the factory writes carries a C2PA manifest that says how it was made: a render is
``c2pa.created`` as IPTC ``trainedAlgorithmicMedia``; a composite opens its render (the one
``parentOf`` ingredient) and places a logo or background (``componentOf``); an encode opens
its composite and transcodes it; a deliverable places its encoded segments. Each ingredient
embeds the ingredient's own manifest store, so a deliverable carries its whole history, and
an assertion labelled ``PROVENANCE_LABEL`` carries the factory's own facts (model, training
provenance, royalty routing, lineage record digests) as plain JSON.

c2pa-rs bundles no trust list: the factory's root certificate is the only trust anchor, given
to the builder (which records each ingredient's validation when adding it) and to every
reader. Signing needs no network: no timestamp authority, no remote manifests, no OCSP.
"""

import io
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict

from factory.errors import BadInput

PROVENANCE_LABEL = "dev.asset-factory.provenance"

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The SDK's C2paDigitalSourceType.TRAINED_ALGORITHMIC_DATA is a different IPTC term.
TRAINED_ALGORITHMIC_MEDIA = _IPTC + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = _IPTC + "compositeWithTrainedAlgorithmicMedia"

# ES256 over Ed25519: both cost about 1 ms a signature, but ES256 is the most widely
# supported C2PA algorithm (Ed25519 is missing from some validators and WebCrypto stacks).
ALG = "es256"
_CLAIM_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# A verifier whose clock runs behind the factory's must not see a fresh leaf as not yet valid.
_BACKDATE = timedelta(days=1)
_MP4 = "video/mp4"
_SETTINGS: dict[str, Any] = {
    # Thumbnails upscale to 1024 px: hundreds of KB and 100+ ms per output for nothing.
    "builder": {"thumbnail": {"enabled": False}},
    # A factory worker or verifier must never fetch anything while signing or reading.
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}
# The JSON integers that c2pa-rs stores exactly; wider ones silently become floats.
_INT_RANGE = range(-(2**63), 2**64)

State = Literal["Trusted", "Valid", "Invalid", "Missing"]
Relationship = Literal["parentOf", "componentOf"]
IngredientFormat = Literal["video/mp4", "image/png", "image/jpeg"]


@dataclass(frozen=True)
class CertificateChain:
    """A C2PA signing identity: a self-signed root (the trust anchor) and the leaf that signs.

    ``leaf_cert_pem`` is the chain the signer sends: the leaf, then intermediates (none here).
    The root is not in it; verifiers must hold it already, as their trust anchor.
    """

    root_cert_pem: bytes
    leaf_cert_pem: bytes
    leaf_key_pem: bytes
    alg: str

    def __repr__(self) -> str:
        # Never the key: a repr reaches logs and tracebacks.
        leaf = x509.load_pem_x509_certificate(self.leaf_cert_pem)
        return (
            f"CertificateChain(alg={self.alg!r}, leaf={leaf.subject.rfc4514_string()!r}, "
            f"not_after={leaf.not_valid_after_utc.date().isoformat()})"
        )


@dataclass(frozen=True)
class Ingredient:
    """An asset the signed MP4 was made from; ``label`` names it in actions' ingredientIds."""

    data: bytes
    title: str
    label: str
    format: IngredientFormat = "video/mp4"
    relationship: Relationship = "componentOf"

    def __repr__(self) -> str:
        return (
            f"Ingredient(title={self.title!r}, label={self.label!r}, format={self.format!r}, "
            f"relationship={self.relationship!r}, size={len(self.data)})"
        )


class IngredientReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    relationship: str
    # Whether the ingredient carried credentials of its own (a plain logo PNG does not).
    has_manifest: bool
    failures: list[str]
    ingredients: list["IngredientReport"]


class CredentialReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: State
    failures: list[str]
    title: str | None = None
    digital_source_type: str | None = None
    assertion: dict[str, Any] | None = None
    ingredients: list[IngredientReport] = []


def make_certificate_chain(common_name: str, *, years: int = 30) -> CertificateChain:
    """A new root CA and a leaf it issued, both valid for ``years``, with fresh ES256 keys.

    Without a timestamp authority a manifest is judged by its leaf's validity at read time,
    so an offline factory needs a leaf that outlives everything it signs.
    """
    now = datetime.now(UTC)
    not_before, not_after = now - _BACKDATE, now + timedelta(days=365 * years + years // 4)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(common_name, f"{common_name} C2PA Root")
    root_key_id = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        _certificate(root_name, root_name, root_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(root_key_id, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_name = _name(common_name, f"{common_name} C2PA Signer")
    # c2pa-rs refuses a leaf that lacks any of these, saying only "the certificate is
    # invalid". The claim-signing EKU is C2PA's own, but c2pa-rs accepts it only when its
    # trust settings list it; emailProtection it accepts by default.
    leaf = (
        _certificate(leaf_name, root_name, leaf_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, _CLAIM_SIGNING_EKU]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_key_id),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return CertificateChain(
        root_cert_pem=root.public_bytes(serialization.Encoding.PEM),
        leaf_cert_pem=leaf.public_bytes(serialization.Encoding.PEM),
        leaf_key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        alg=ALG,
    )


def provenance_assertion(data: Mapping[str, Any]) -> dict[str, Any]:
    """The factory's custom assertion, carrying ``data`` as JSON that reads back equal."""
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadInput(f"provenance must be plain JSON: {error}") from None
    if json.loads(text) != data or not _ints_in_range(data):
        raise BadInput(
            "provenance must be plain JSON that reads back equal: string keys, lists not "
            "tuples, integers within 64 bits"
        )
    # Stored as JSON, not the default CBOR: CBOR turns lists of small integers into bytes.
    return {"label": PROVENANCE_LABEL, "kind": "Json", "data": dict(data)}


class CredentialSigner:
    """Signs MP4s with one certificate chain; share one instance between threads.

    The native signer and context are made per process on first use: those made before a
    fork do not work in the child.
    """

    def __init__(self, chain: CertificateChain, trust_anchors: Sequence[bytes] = ()) -> None:
        self._chain = chain
        # The builder validates each ingredient's credentials as it adds it, and records the
        # result in the manifest: without our root those would all read untrusted.
        self._anchors = (chain.root_cert_pem, *trust_anchors)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._signer: c2pa.Signer | None = None
        self._context: c2pa.Context | None = None

    def __repr__(self) -> str:
        return f"CredentialSigner({self._chain!r})"

    def sign_mp4(
        self,
        data: bytes,
        *,
        title: str,
        digital_source_type: str | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        ingredients: Sequence[Ingredient] = (),
        assertions: Sequence[Mapping[str, Any]] = (),
    ) -> bytes:
        """``data`` with an embedded manifest; frames and stream layout are unchanged.

        Without ``actions`` the manifest says ``c2pa.created`` as ``digital_source_type``;
        with them, they are written as given and carry any digitalSourceType themselves.
        Ingredient labels are what the actions' ``ingredientIds`` refer to.
        """
        if (actions is None) == (digital_source_type is None):
            raise BadInput("sign_mp4 needs exactly one of digital_source_type and actions")
        if actions is None:
            actions = [{"action": "c2pa.created", "digitalSourceType": digital_source_type}]
        labels = [ingredient.label for ingredient in ingredients]
        if len(set(labels)) != len(labels):
            raise BadInput(f"ingredient labels must be unique, got {labels}")
        # c2pa-rs enforces this only when the parents carry manifests of their own.
        parents = [i.label for i in ingredients if i.relationship == "parentOf"]
        if len(parents) > 1:
            raise BadInput(f"an asset has at most one parentOf ingredient, got {parents}")
        manifest = {
            "claim_generator_info": [{"name": "asset-factory", "version": _factory_version()}],
            "title": title,
            "format": _MP4,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": list(actions)}},
                *assertions,
            ],
        }
        signer, context = self._native()
        output = io.BytesIO()
        try:
            with c2pa.Builder(manifest, context=context) as builder:
                for ingredient in ingredients:
                    builder.add_ingredient(
                        {
                            "title": ingredient.title,
                            "relationship": ingredient.relationship,
                            "label": ingredient.label,
                        },
                        ingredient.format,
                        io.BytesIO(ingredient.data),
                    )
                builder.sign(signer, _MP4, io.BytesIO(data), output)
        except c2pa.C2paError as error:
            raise BadInput(f"cannot sign {title!r}: {error}") from None
        return output.getvalue()

    def sign_rendered(self, data: bytes, *, title: str, provenance: Mapping[str, Any]) -> bytes:
        """A model's render: created as trained algorithmic media, from no ingredients."""
        return self.sign_mp4(
            data,
            title=title,
            digital_source_type=TRAINED_ALGORITHMIC_MEDIA,
            assertions=[provenance_assertion(provenance)],
        )

    def sign_composite(
        self,
        data: bytes,
        *,
        title: str,
        render: Ingredient,
        components: Sequence[Ingredient],
        provenance: Mapping[str, Any],
    ) -> bytes:
        """The render opened as parent, components (logo, background) placed, then edited.

        The composite's digitalSourceType sits on ``c2pa.edited``: a manifest may hold only
        one ``c2pa.created`` or ``c2pa.opened``, and it must come first, so a composite with
        a parent cannot also be "created".
        """
        actions: list[dict[str, Any]] = [_action("c2pa.opened", [render])]
        if components:
            actions.append(_action("c2pa.placed", components))
        actions.append(
            {"action": "c2pa.edited", "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA}
        )
        return self.sign_mp4(
            data,
            title=title,
            actions=actions,
            ingredients=[
                replace(render, relationship="parentOf"),
                *(replace(component, relationship="componentOf") for component in components),
            ],
            assertions=[provenance_assertion(provenance)],
        )

    def sign_encoded(
        self, data: bytes, *, title: str, source: Ingredient, provenance: Mapping[str, Any]
    ) -> bytes:
        """A delivery encode: its source opened as parent, then transcoded (non-editorial)."""
        return self.sign_mp4(
            data,
            title=title,
            actions=[_action("c2pa.opened", [source]), {"action": "c2pa.transcoded"}],
            ingredients=[replace(source, relationship="parentOf")],
            assertions=[provenance_assertion(provenance)],
        )

    def sign_assembled(
        self,
        data: bytes,
        *,
        title: str,
        segments: Sequence[Ingredient],
        provenance: Mapping[str, Any],
    ) -> bytes:
        """A deliverable joined from segments: created as a composite, each segment placed.

        No segment is the parent: they are equals, and C2PA allows one parent at most.
        """
        return self.sign_mp4(
            data,
            title=title,
            actions=[
                {
                    "action": "c2pa.created",
                    "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
                },
                _action("c2pa.placed", segments),
            ],
            ingredients=[replace(segment, relationship="componentOf") for segment in segments],
            assertions=[provenance_assertion(provenance)],
        )

    def _native(self) -> tuple[c2pa.Signer, c2pa.Context]:
        with self._lock:
            if self._pid != os.getpid():
                info = c2pa.C2paSignerInfo(
                    self._chain.alg.encode(),
                    self._chain.leaf_cert_pem,
                    self._chain.leaf_key_pem,
                    None,
                )
                self._signer = c2pa.Signer.from_info(info)
                self._context = _context(self._anchors)
                self._pid = os.getpid()
            assert self._signer is not None and self._context is not None
            return self._signer, self._context


def read_credentials(
    data: bytes, trust_anchors: Sequence[bytes], *, with_assertion: bool = True
) -> CredentialReport:
    """What the embedded manifest says and whether it holds, judged against ``trust_anchors``.

    ``with_assertion=False`` leaves out the factory assertion (``assertion`` is None), which
    needs the store serialised a second time; a verdict does not use it.

    ``state`` is the active manifest's own: a child of a tampered ingredient still reads
    Trusted, so look at ``verify_credentials`` (or walk ``ingredients``) before trusting one.
    """
    try:
        reader = c2pa.Reader.try_create(
            _MP4, io.BytesIO(data), None, _context(tuple(trust_anchors))
        )
    except c2pa.C2paError as error:
        return CredentialReport(state="Invalid", failures=[f"manifest unreadable: {error}"])
    if reader is None:
        return CredentialReport(state="Missing", failures=["manifest missing"])
    with reader:
        store = json.loads(reader.json())
        exact = json.loads(reader.crjson()) if with_assertion else None
    label = store["active_manifest"]
    results = store.get("validation_results", {})
    # Checks made now, while reading, of the ingredient manifests embedded in this store,
    # keyed by the URI of the ingredient assertion that points at each.
    deltas = {
        delta["ingredientAssertionURI"]: _failures(delta.get("validationDeltas", {}))
        for delta in results.get("ingredientDeltas", [])
    }
    ingredients = _ingredients(store["manifests"], label, deltas, {label})
    # A delta the walk did not place still has to surface somewhere.
    unplaced = [f"{uri}: {failure}" for uri, failures in deltas.items() for failure in failures]
    active = store["manifests"][label]
    return CredentialReport(
        state=store["validation_state"],
        failures=_failures(results.get("activeManifest", {})) + unplaced,
        title=active.get("title"),
        digital_source_type=_digital_source_type(active),
        assertion=_provenance(exact, label) if exact is not None else None,
        ingredients=ingredients,
    )


def verify_credentials(data: bytes, trust_anchors: Sequence[bytes]) -> list[str]:
    """Every reason not to trust ``data``'s credentials; empty when there is none.

    Passes only when the manifest reads Trusted and no ingredient, at any depth, recorded a
    failure when it was added.
    """
    report = read_credentials(data, trust_anchors, with_assertion=False)
    reasons = list(report.failures)
    for ingredient in report.ingredients:
        reasons.extend(_ingredient_reasons(ingredient, f"ingredient {ingredient.title!r}"))
    if report.state != "Trusted" and not reasons:
        reasons.append(f"manifest is {report.state}, not Trusted")
    return reasons


def _context(trust_anchors: tuple[bytes, ...]) -> c2pa.Context:
    return _process_context(os.getpid(), trust_anchors)


@lru_cache(maxsize=16)
def _process_context(pid: int, trust_anchors: tuple[bytes, ...]) -> c2pa.Context:
    # A Context is thread-safe, so one per set of anchors serves every reader and builder
    # of a process; one inherited through fork is dead, hence the pid in the key.
    if not trust_anchors:
        # An empty anchor list breaks reading ("COSE error parsing certificate") instead of
        # leaving every signer untrusted.
        return c2pa.Context.from_dict(_SETTINGS)
    anchors = b"".join(trust_anchors).decode("ascii")
    return c2pa.Context.from_dict({**_SETTINGS, "trust": {"user_anchors": anchors}})


def _name(organization: str, common_name: str) -> x509.Name:
    # C2PA tools show the issuer's O as who signed.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ints_in_range(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_ints_in_range(item) for item in value.values())
    if isinstance(value, list):
        return all(_ints_in_range(item) for item in value)
    return not isinstance(value, int) or isinstance(value, bool) or value in _INT_RANGE


@lru_cache(maxsize=1)
def _factory_version() -> str:
    try:
        return version("asset-factory")
    except PackageNotFoundError:
        return "unknown"


def _action(name: str, ingredients: Sequence[Ingredient]) -> dict[str, Any]:
    return {
        "action": name,
        "parameters": {"ingredientIds": [ingredient.label for ingredient in ingredients]},
    }


def _failures(results: Mapping[str, Any]) -> list[str]:
    return [
        f"{status['code']}: {status.get('explanation', '')}".rstrip(": ")
        for status in results.get("failure", [])
    ]


def _digital_source_type(manifest: Mapping[str, Any]) -> str | None:
    for assertion in manifest.get("assertions", []):
        if assertion["label"].startswith("c2pa.actions"):
            for action in assertion["data"].get("actions", []):
                if "digitalSourceType" in action:
                    return action["digitalSourceType"]
    return None


def _provenance(exact: Mapping[str, Any], label: str) -> dict[str, Any] | None:
    # Reader.json() shows lists of small integers as base64 bytes (and [300] as "LA=="),
    # so the assertion comes from the crJSON form, which keeps the stored JSON as it is.
    for manifest in exact.get("manifests", []):
        if manifest.get("label") == label:
            return manifest.get("assertions", {}).get(PROVENANCE_LABEL)
    return None


def _ingredients(
    manifests: Mapping[str, Any], label: str, deltas: dict[str, list[str]], seen: set[str]
) -> list[IngredientReport]:
    """The ingredients of manifest ``label``, each with what was recorded when it was added
    and what reading found now; ``deltas`` loses the entries placed here."""
    reports = []
    for ingredient in manifests[label].get("ingredients", []):
        uri = f"self#jumbf=/c2pa/{label}/c2pa.assertions/{ingredient.get('label')}"
        recorded = ingredient.get("validation_results", {}).get("activeManifest", {})
        nested = ingredient.get("active_manifest")
        # A hostile store could make manifests ingredients of each other.
        walk = nested in manifests and nested not in seen
        reports.append(
            IngredientReport(
                title=ingredient.get("title", ""),
                relationship=ingredient.get("relationship", ""),
                has_manifest=nested is not None,
                failures=_failures(recorded) + deltas.pop(uri, []),
                ingredients=_ingredients(manifests, nested, deltas, seen | {nested})
                if walk
                else [],
            )
        )
    return reports


def _ingredient_reasons(ingredient: IngredientReport, path: str) -> list[str]:
    reasons = [f"{path}: {failure}" for failure in ingredient.failures]
    for child in ingredient.ingredients:
        reasons.extend(_ingredient_reasons(child, f"{path} > {child.title!r}"))
    return reasons
