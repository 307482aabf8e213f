"""Reading a C2PA manifest back: what it says and whether it holds against the trust anchors.

A child of a tampered ingredient still reads Trusted on its own, so a verdict walks
every ingredient, at any depth, for the failures recorded when it was added.
"""

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import c2pa
from pydantic import BaseModel, ConfigDict

from media.credentials import FACTORY_LABEL_PREFIX, MP4, PROVENANCE_LABEL, native_context

State = Literal["Trusted", "Valid", "Invalid", "Missing"]


class IngredientReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    relationship: str
    # Whether the ingredient carried credentials of its own (a plain logo PNG does not).
    has_manifest: bool
    failures: list[str]
    ingredients: list["IngredientReport"]
    # The factory's provenance assertion in the ingredient's manifest, when asked for.
    assertion: dict[str, Any] | None = None
    # Every factory assertion (provenance included) in it, by label, when asked for.
    factory_assertions: dict[str, dict[str, Any]] = {}


class CredentialReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: State
    failures: list[str]
    title: str | None = None
    digital_source_type: str | None = None
    assertion: dict[str, Any] | None = None
    factory_assertions: dict[str, dict[str, Any]] = {}
    ingredients: list[IngredientReport] = []


def read_credentials(
    data: bytes, trust_anchors: Sequence[bytes], *, with_assertion: bool = True
) -> CredentialReport:
    """What the embedded manifest says and whether it holds, judged against ``trust_anchors``.

    ``with_assertion=False`` leaves out the factory assertions (``assertion`` is None and
    ``factory_assertions`` empty), which need the store serialised a second time; a verdict
    does not use them.

    ``state`` is the active manifest's own: a child of a tampered ingredient still reads
    Trusted, so look at ``verify_credentials`` (or walk ``ingredients``) before trusting one.
    """
    try:
        reader = c2pa.Reader.try_create(
            MP4, io.BytesIO(data), None, native_context(tuple(trust_anchors))
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
    ingredients = _ingredients(store["manifests"], label, deltas, {label}, exact)
    # A delta the walk did not place still has to surface somewhere.
    unplaced = [f"{uri}: {failure}" for uri, failures in deltas.items() for failure in failures]
    active = store["manifests"][label]
    ours = _factory_assertions(exact, label) if exact is not None else {}
    return CredentialReport(
        state=store["validation_state"],
        failures=_failures(results.get("activeManifest", {})) + unplaced,
        title=active.get("title"),
        digital_source_type=_digital_source_type(active),
        assertion=ours.get(PROVENANCE_LABEL),
        factory_assertions=ours,
        ingredients=ingredients,
    )


def verify_credentials(data: bytes, trust_anchors: Sequence[bytes]) -> list[str]:
    """Every reason not to trust ``data``'s credentials; empty when there is none.

    Passes only when the manifest reads Trusted and no ingredient, at any depth, recorded a
    failure when it was added.
    """
    return credential_problems(read_credentials(data, trust_anchors, with_assertion=False))


def credential_problems(report: CredentialReport) -> list[str]:
    """Every reason in ``report`` not to trust the credentials; empty when there is none."""
    reasons = list(report.failures)
    for ingredient in report.ingredients:
        reasons.extend(_ingredient_reasons(ingredient, f"ingredient {ingredient.title!r}"))
    if report.state != "Trusted" and not reasons:
        reasons.append(f"manifest is {report.state}, not Trusted")
    return reasons


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


def _factory_assertions(exact: Mapping[str, Any], label: str) -> dict[str, dict[str, Any]]:
    # Reader.json() shows lists of small integers as base64 bytes (and [300] as "LA=="),
    # so the assertions come from the crJSON form, which gives the stored data as it is.
    for manifest in exact.get("manifests", []):
        if manifest.get("label") == label:
            return {
                name: data
                for name, data in manifest.get("assertions", {}).items()
                if name.startswith(FACTORY_LABEL_PREFIX)
            }
    return {}


def _ingredients(
    manifests: Mapping[str, Any],
    label: str,
    deltas: dict[str, list[str]],
    seen: set[str],
    exact: Mapping[str, Any] | None,
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
        ours = _factory_assertions(exact, nested) if exact is not None and walk else {}
        reports.append(
            IngredientReport(
                title=ingredient.get("title", ""),
                relationship=ingredient.get("relationship", ""),
                has_manifest=nested is not None,
                failures=_failures(recorded) + deltas.pop(uri, []),
                ingredients=_ingredients(manifests, nested, deltas, seen | {nested}, exact)
                if walk
                else [],
                assertion=ours.get(PROVENANCE_LABEL),
                factory_assertions=ours,
            )
        )
    return reports


def _ingredient_reasons(ingredient: IngredientReport, path: str) -> list[str]:
    reasons = [f"{path}: {failure}" for failure in ingredient.failures]
    for child in ingredient.ingredients:
        reasons.extend(_ingredient_reasons(child, f"{path} > {child.title!r}"))
    return reasons
