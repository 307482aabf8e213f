"""`factory verify`: check an asset's C2PA manifest and its whole signed lineage graph.

A verdict needs nothing but the store: the published public keys and C2PA roots,
the lineage records and the assets. Every record's signature, every hash link from
a child to its parents' records, and every stored asset's bytes are checked; any
failure names the asset, the stage and the precise reason.
"""

from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from factory.assets import sha256_hex
from factory.errors import IntegrityError, ObjectNotFound
from factory.lineage import LineageRecord, record_digest, verify_record
from media.credential_reports import verify_credentials
from storage.assets import asset_key
from storage.keys import load_c2pa_roots, load_public_keys
from storage.lineage import RecordStore
from storage.objectstore import ObjectStore


def _is_mp4(data: bytes) -> bool:
    # ISO BMFF starts with a box whose type is `ftyp`.
    return data[4:8] == b"ftyp"


def _expects_manifest(media_type: str | None) -> bool:
    # Every MP4 the factory writes carries C2PA, intermediates too; an asset without a
    # record is checked as well, so a stripped file gets a reason from both sides.
    return media_type is None or media_type.split(";")[0] == "video/mp4"


class ProvenanceNode(BaseModel):
    """One asset in the provenance tree and what was found wrong with it, if anything."""

    digest: str
    stage: str | None = None
    media_type: str | None = None
    record_digest: str | None = None
    model: str | None = None
    problems: list[str] = []
    parents: list["ProvenanceNode"] = []


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


class _Walker:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.records = RecordStore(store)
        self.public_keys = load_public_keys(store)
        self.seen: dict[str, ProvenanceNode] = {}
        self.problems: list[str] = []
        self.stored: list[str] = []

    def walk(self, digest: str, expected_record: str | None) -> ProvenanceNode:
        if digest in self.seen:
            node = self.seen[digest]
            if expected_record is not None and node.record_digest not in (None, expected_record):
                self.fail(node, self._link_problem(digest, node.record_digest, expected_record))
            return node
        node = ProvenanceNode(digest=digest)
        self.seen[digest] = node
        try:
            envelope = self.records.read(digest)
        except ObjectNotFound:
            self.fail(node, f"asset {_short(digest)}: no lineage record (deleted or never written)")
            return node
        node.record_digest = record_digest(envelope)
        if expected_record is not None and node.record_digest != expected_record:
            self.fail(node, self._link_problem(digest, node.record_digest, expected_record))
        try:
            record = verify_record(envelope, self.public_keys, expected_digest=digest)
        except IntegrityError as error:
            self.fail(node, f"asset {_short(digest)}: record rejected: {error}")
            return node
        self._describe(node, record)
        self.stored.append(digest)
        node.parents = [self.walk(parent.digest, parent.record_digest) for parent in record.parents]
        return node

    def _describe(self, node: ProvenanceNode, record: LineageRecord) -> None:
        node.stage = record.stage.name
        node.media_type = record.asset.media_type
        node.model = record.model.name if record.model else None

    def _link_problem(self, digest: str, found: str | None, expected: str) -> str:
        return (
            f"asset {_short(digest)}: its record hashes to {_short(found or '')}… but its child "
            f"links to record {_short(expected)}… (the record was replaced or altered)"
        )

    def fail(self, node: ProvenanceNode, problem: str) -> None:
        node.problems.append(problem)
        self.problems.append(problem)

    def checked_already(self, digest: str, actual: str) -> None:
        """``digest``'s stored bytes were hashed by the caller, to ``actual``."""
        if digest in self.stored:
            self.stored.remove(digest)
        if actual != digest:
            self.fail(self.seen[digest], _altered(digest, actual))

    def check_stored_bytes(self) -> None:
        """Hash every stored asset of the graph; threads overlap I/O and hashing."""

        def check(digest: str) -> str | None:
            try:
                actual = self.store.sha256(asset_key(digest))
            except ObjectNotFound:
                return f"asset {_short(digest)}: missing from the store"
            return _altered(digest, actual) if actual != digest else None

        with ThreadPoolExecutor(max_workers=4) as pool:
            for digest, problem in zip(self.stored, pool.map(check, self.stored), strict=True):
                if problem:
                    self.fail(self.seen[digest], problem)


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
        walker = _Walker(store)
        tree = walker.walk(digest, None)
        if from_store:
            walker.checked_already(digest, actual)
        if manifest_check is None and _expects_manifest(tree.media_type):
            manifest_check = pool.submit(verify_credentials, data, roots)
        walker.check_stored_bytes()
        credentials = manifest_check.result() if manifest_check is not None else []
    for problem in credentials:
        walker.fail(tree, f"C2PA: {problem}")
    return VerifyReport(
        digest=digest,
        verified=not walker.problems,
        credentials=credentials,
        problems=walker.problems,
        tree=tree,
    )
