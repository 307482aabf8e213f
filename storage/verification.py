"""`factory verify`: check an asset's C2PA manifest and its whole signed lineage graph.

A verdict needs the store and a trust anchor the verifier holds (see ``storage.trust``):
only keys and C2PA roots that anchor's root certified count. Every record's signature,
every hash link from a child to its parents' records, every stored asset's bytes, and
every manifest's claimed parent records against the records walked are checked; any
failure names the asset, the stage and the precise reason.
"""

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from factory.assets import sha256_hex
from factory.errors import ObjectNotFound
from media.credential_reports import (
    CredentialReport,
    IngredientReport,
    credential_problems,
    read_credentials,
)
from media.credentials import QUALITY_VERDICT_LABEL
from storage.assets import asset_key
from storage.lineage_reader import LineageGraph, LineageNode, LineageReader
from storage.objectstore import ObjectStore
from storage.trust import TrustedKeys


def _is_mp4(data: bytes) -> bool:
    # ISO BMFF starts with a box whose type is `ftyp`.
    return data[4:8] == b"ftyp"


def _expects_manifest(media_type: str | None) -> bool:
    # Every MP4 the factory writes carries C2PA, intermediates too; an asset without a
    # record is checked as well, so a stripped file gets a reason from both sides.
    return media_type is None or media_type.split(";")[0] == "video/mp4"


# The tree `factory verify` prints and returns as JSON.
ProvenanceNode = LineageNode


class VerifyReport(BaseModel):
    digest: str
    verified: bool
    trusted_root: str
    credentials: list[str]
    problems: list[str]
    tree: ProvenanceNode


def _short(digest: str) -> str:
    return digest[:12]


def _altered(digest: str, actual: str) -> str:
    return f"asset {_short(digest)}: stored bytes hash to {_short(actual)}… (altered)"


def _check_stored_bytes(store: ObjectStore, graph: LineageGraph, skip: str | None) -> None:
    """Hash every stored asset of the graph but ``skip``; threads overlap I/O and hashing."""

    def check(digest: str) -> str | None:
        try:
            actual = store.sha256(asset_key(digest))
        except ObjectNotFound:
            return f"asset {_short(digest)}: missing from the store"
        return _altered(digest, actual) if actual != digest else None

    nodes = [node for node in graph.verified if node.digest != skip]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for node, problem in zip(nodes, pool.map(check, [n.digest for n in nodes]), strict=True):
            if problem:
                graph.fail(node, problem)


def _claimed(assertion: Mapping[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["digest"], p["record_digest"]) for p in assertion.get("parent_records", []))


def _walked(node: LineageNode) -> list[tuple[str, str]]:
    assert node.record is not None
    return sorted((p.digest, p.record_digest) for p in node.record.parents)


def _same_making(node: LineageNode, assertion: Mapping[str, Any]) -> bool:
    assert node.record is not None
    return (
        node.record.stage.name == assertion.get("stage")
        and node.record.flow_run_id == assertion.get("flow_run_id")
        and _walked(node) == _claimed(assertion)
    )


def _verdict_problem(
    node: LineageNode, claimed: Mapping[str, Any] | None, where: str
) -> str | None:
    """Whether a gate's record and its manifest tell the same verdict."""
    assert node.record is not None
    recorded = node.record.verdict
    if recorded is None:
        return None
    if claimed is None:
        return f"C2PA: {where} carries no quality verdict, but its lineage record does"
    # A deliverable's assertion also lists its segments' verdicts, which their own checks cover.
    own = {key: value for key, value in claimed.items() if key != "segments"}
    stored = recorded.model_dump(mode="json")
    differing = sorted(key for key in own.keys() | stored.keys() if own.get(key) != stored.get(key))
    if differing:
        return (
            f"C2PA: {where} asserts a quality verdict that differs from its lineage record's "
            f"in {', '.join(differing)} (one of them was altered)"
        )
    return None


def _cross_check(
    graph: LineageGraph,
    node: LineageNode,
    report: CredentialReport | IngredientReport,
    where: str,
) -> None:
    """A manifest's claimed parent records must be the records walked, at every depth,
    and a gate's manifest must assert the verdict its record holds."""
    assertion, ingredients = report.assertion, report.ingredients
    if node.record is None:
        return  # the record's own problem is reported already
    if assertion is None:
        graph.fail(node, f"C2PA: {where} carries no factory assertion to check records against")
        return
    if not _same_making(node, assertion):
        graph.fail(
            node,
            f"C2PA: {where} says stage {assertion.get('stage')} of run "
            f"{assertion.get('flow_run_id')} made it from records "
            f"{[r[:12] for _, r in _claimed(assertion)]}, but its lineage record says stage "
            f"{node.record.stage.name} of run {node.record.flow_run_id} from "
            f"{[r[:12] for _, r in _walked(node)]} (the records were re-signed or replaced)",
        )
        return
    verdict = _verdict_problem(node, report.factory_assertions.get(QUALITY_VERDICT_LABEL), where)
    if verdict:
        graph.fail(node, verdict)
    for ingredient in ingredients:
        if not ingredient.has_manifest:
            continue
        inner = f"{where} > {ingredient.title!r}"
        found = next(
            (
                parent
                for parent in node.parents
                if parent.record is not None
                and ingredient.assertion is not None
                and _same_making(parent, ingredient.assertion)
            ),
            None,
        )
        if found is None:
            graph.fail(node, f"C2PA: {inner} matches none of the parent records walked")
        else:
            _cross_check(graph, found, ingredient, inner)


def _credentials(data: bytes, roots: Sequence[bytes]) -> CredentialReport:
    return read_credentials(data, roots, with_assertion=True)


def verify(
    store: ObjectStore,
    trusted: TrustedKeys,
    *,
    digest: str | None = None,
    data: bytes | None = None,
) -> VerifyReport:
    """Verify a file's bytes (``data``) or a stored asset (``digest``) and all its ancestors,
    believing only the keys and C2PA roots in ``trusted``."""
    from_store = data is None
    if data is None:
        if digest is None:
            raise ValueError("give digest or data")
        try:
            data = store.get(asset_key(digest))
        except ObjectNotFound:
            raise ObjectNotFound(
                f"asset {digest} is not in {store.url}; pass the file itself or the right --store"
            ) from None
    roots = trusted.c2pa_roots
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The manifest check runs beside the hashing and the record walk: both spend
        # their time in native code (c2pa-rs, OpenSSL's SHA-256) with the GIL released.
        manifest_check = pool.submit(_credentials, data, roots) if _is_mp4(data) else None
        actual = sha256_hex(data)
        # Asked by digest, the stored copy is what was read: walk the asset asked for, and
        # its bytes need no second hashing.
        digest = digest if from_store else actual
        graph = LineageReader(store, trusted).walk(digest)
        tree = graph.root
        assert tree is not None
        if from_store and actual != digest:
            graph.fail(tree, _altered(digest, actual))
        if manifest_check is None and _expects_manifest(tree.media_type):
            manifest_check = pool.submit(_credentials, data, roots)
        _check_stored_bytes(store, graph, skip=digest if from_store else None)
        report = manifest_check.result() if manifest_check is not None else None
    credentials = credential_problems(report) if report is not None else []
    for problem in credentials:
        graph.fail(tree, f"C2PA: {problem}")
    if report is not None and report.state in ("Trusted", "Valid"):
        _cross_check(graph, tree, report, "the manifest")
    return VerifyReport(
        digest=digest,
        verified=not graph.problems,
        trusted_root=trusted.root,
        credentials=credentials,
        problems=graph.problems,
        tree=tree,
    )
