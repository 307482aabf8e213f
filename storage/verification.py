"""`factory verify`: check an asset's C2PA manifest and its whole signed lineage graph.

A verdict needs nothing but the store: the published public keys and C2PA roots,
the lineage records and the assets. Every record's signature, every hash link from
a child to its parents' records, and every stored asset's bytes are checked; any
failure names the asset, the stage and the precise reason.
"""

from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from factory.assets import sha256_hex
from factory.errors import ObjectNotFound
from media.credential_reports import verify_credentials
from storage.assets import asset_key
from storage.keys import load_c2pa_roots
from storage.lineage_reader import LineageGraph, LineageNode, LineageReader
from storage.objectstore import ObjectStore


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


def verify(
    store: ObjectStore, *, digest: str | None = None, data: bytes | None = None
) -> VerifyReport:
    """Verify a file's bytes (``data``) or a stored asset (``digest``) and all its ancestors."""
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
    roots = load_c2pa_roots(store)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The manifest check runs beside the hashing and the record walk: both spend
        # their time in native code (c2pa-rs, OpenSSL's SHA-256) with the GIL released.
        manifest_check = pool.submit(verify_credentials, data, roots) if _is_mp4(data) else None
        actual = sha256_hex(data)
        # Asked by digest, the stored copy is what was read: walk the asset asked for, and
        # its bytes need no second hashing.
        digest = digest if from_store else actual
        graph = LineageReader.of(store).walk(digest)
        tree = graph.root
        assert tree is not None
        if from_store and actual != digest:
            graph.fail(tree, _altered(digest, actual))
        if manifest_check is None and _expects_manifest(tree.media_type):
            manifest_check = pool.submit(verify_credentials, data, roots)
        _check_stored_bytes(store, graph, skip=digest if from_store else None)
        credentials = manifest_check.result() if manifest_check is not None else []
    for problem in credentials:
        graph.fail(tree, f"C2PA: {problem}")
    return VerifyReport(
        digest=digest,
        verified=not graph.problems,
        credentials=credentials,
        problems=graph.problems,
        tree=tree,
    )
