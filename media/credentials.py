"""Signing the factory's MP4s with Content Credentials (C2PA).

Every MP4 the factory writes carries a C2PA manifest that says how it was made, by one of
four actions: a render is ``created`` as IPTC ``trainedAlgorithmicMedia``; a composite opens
its render (the one ``parentOf`` ingredient), places a logo or background (``componentOf``)
and is ``composited``; an encode opens its source and is ``transcoded``; a deliverable is
``assembled`` from its segments, placed as equals. Each ingredient embeds the ingredient's
own manifest store, so a deliverable carries its whole history, and an assertion labelled
``PROVENANCE_LABEL`` carries the factory's own facts (model, training provenance, royalty
routing, lineage record digests).

The factory's own assertions (labels under ``FACTORY_LABEL_PREFIX``) are stored as CBOR, as
the C2PA specification prefers: a JSON assertion is hashed as the bytes c2pa-rs wrote, and
independent readers that re-serialize it (TrustNXT's c2pa-ts writes ``1.0`` as ``1`` and
rounds integers past 2**53) then report ``assertion.hashedURI.mismatch``.

c2pa-rs bundles no trust list: the factory's root certificate is the only trust anchor, given
to the builder (which records each ingredient's validation when adding it) and to every
reader. Signing needs no network: no timestamp authority, no remote manifests, no OCSP.
"""

import io
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import c2pa

from factory.errors import BadInput
from media.certificates import CertificateChain

FACTORY_LABEL_PREFIX = "dev.asset-factory."
PROVENANCE_LABEL = FACTORY_LABEL_PREFIX + "provenance"
# The gate's verdict on a segment, and on a deliverable the verdicts of its segments.
QUALITY_VERDICT_LABEL = FACTORY_LABEL_PREFIX + "quality-verdict"
MP4 = "video/mp4"

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The SDK's C2paDigitalSourceType.TRAINED_ALGORITHMIC_DATA is a different IPTC term.
TRAINED_ALGORITHMIC_MEDIA = _IPTC + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = _IPTC + "compositeWithTrainedAlgorithmicMedia"

_SETTINGS: dict[str, Any] = {
    # Thumbnails upscale to 1024 px: hundreds of KB and 100+ ms per output for nothing.
    "builder": {"thumbnail": {"enabled": False}},
    # A factory worker or verifier must never fetch anything while signing or reading.
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}
# The integers c2pa-rs stores in a CBOR assertion; it refuses to sign wider ones.
_INT_RANGE = range(-(2**63), 2**63)
# The rest of a label after the prefix: dot-separated lowercase words, as C2PA labels are.
_LABEL_REST = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*(?:\.[a-z0-9]+(?:[-_][a-z0-9]+)*)*")

Action = Literal["created", "composited", "transcoded", "assembled"]
Relationship = Literal["parentOf", "componentOf"]
IngredientFormat = Literal["video/mp4", "image/png", "image/jpeg"]


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


def factory_assertion(label: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """One of the factory's own assertions: ``data`` under ``label``, stored as CBOR.

    ``label`` must start with ``FACTORY_LABEL_PREFIX``; ``data`` must be plain JSON
    (string keys, lists not tuples, finite numbers, integers within 64 bits signed), and
    every reader, c2pa-rs or another, then gives back exactly ``data``.
    """
    rest = label.removeprefix(FACTORY_LABEL_PREFIX)
    if rest == label or not _LABEL_REST.fullmatch(rest):
        raise BadInput(
            f"assertion label {label!r} must be {FACTORY_LABEL_PREFIX!r} followed by "
            "lowercase dot-separated words, e.g. "
            f"{QUALITY_VERDICT_LABEL!r}"
        )
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadInput(f"assertion {label} must be plain JSON: {error}") from None
    if json.loads(text) != data or not _ints_in_range(data):
        raise BadInput(
            f"assertion {label} must be plain JSON that reads back equal: string keys, "
            "lists not tuples, integers within 64 bits signed"
        )
    # No "kind": CBOR is c2pa-rs's default, and lists of small integers stay arrays in it
    # (only Reader.json() shows them as base64; credential_reports reads crJSON).
    return {"label": label, "data": dict(data)}


def provenance_assertion(data: Mapping[str, Any]) -> dict[str, Any]:
    """The factory's provenance assertion (``PROVENANCE_LABEL``), stored as CBOR."""
    return factory_assertion(PROVENANCE_LABEL, data)


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
            "format": MP4,
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
                builder.sign(signer, MP4, io.BytesIO(data), output)
        except c2pa.C2paError as error:
            raise BadInput(f"cannot sign {title!r}: {error}") from None
        return output.getvalue()

    def sign(
        self,
        data: bytes,
        *,
        action: Action,
        title: str,
        parent: Ingredient | None = None,
        components: Sequence[Ingredient] = (),
        provenance: Mapping[str, Any],
        extra_assertions: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> bytes:
        """``data`` signed as made by ``action`` from ``parent`` and ``components``.

        ``created`` takes no ingredients; ``composited`` and ``transcoded`` open a
        ``parent``; ``assembled`` places its components as equals (C2PA allows one parent
        at most). A composite's digitalSourceType sits on ``c2pa.edited``: a manifest may
        hold only one ``c2pa.created`` or ``c2pa.opened``, and it must come first.

        ``provenance`` and each of ``extra_assertions`` (label to data, such as
        ``QUALITY_VERDICT_LABEL``) become factory assertions (``factory_assertion``).
        """
        needs_parent = action in ("composited", "transcoded")
        if (parent is not None) != needs_parent or (components and action == "created"):
            raise BadInput(f"a {action} asset cannot be signed with these ingredients")
        actions: list[dict[str, Any]] = []
        if parent is not None:
            actions.append(_action("c2pa.opened", [parent]))
        if action == "assembled":
            actions.append(
                {
                    "action": "c2pa.created",
                    "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
                }
            )
        if components:
            actions.append(_action("c2pa.placed", components))
        if action == "composited":
            actions.append(
                {
                    "action": "c2pa.edited",
                    "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
                }
            )
        if action == "transcoded":
            actions.append({"action": "c2pa.transcoded"})
        ingredients = [replace(parent, relationship="parentOf")] if parent is not None else []
        ingredients += [replace(component, relationship="componentOf") for component in components]
        return self.sign_mp4(
            data,
            title=title,
            digital_source_type=TRAINED_ALGORITHMIC_MEDIA if action == "created" else None,
            actions=actions or None,
            ingredients=ingredients,
            assertions=[
                provenance_assertion(provenance),
                *_extra_assertions(extra_assertions or {}),
            ],
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
                self._context = native_context(self._anchors)
                self._pid = os.getpid()
            assert self._signer is not None and self._context is not None
            return self._signer, self._context


def native_context(trust_anchors: tuple[bytes, ...]) -> c2pa.Context:
    """The c2pa settings and trust anchors for this process, shared by its threads."""
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


def _extra_assertions(extra: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    if PROVENANCE_LABEL in extra:
        raise BadInput(f"{PROVENANCE_LABEL} is the provenance argument, not an extra assertion")
    return [factory_assertion(label, data) for label, data in extra.items()]


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
