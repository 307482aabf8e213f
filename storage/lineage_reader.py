"""The one lineage reader: records read back with their signatures and hash links checked.

`factory verify`, `factory lineage`, the cache's statistics and garbage collection,
and the warehouse's ingest all read records through here, so none of them trusts a
record whose signature does not verify against a key the trusted root certified.
"""

from collections.abc import Iterator

from pydantic import BaseModel, Field

from factory.errors import IntegrityError, ObjectNotFound
from factory.lineage import LineageRecord, UnknownSigner, record_digest, verify_record
from factory.verdicts import Verdict
from storage.lineage import RECORDS_PREFIX, REUSES_PREFIX, RecordStore
from storage.objectstore import ObjectStore
from storage.trust import TrustAnchor, TrustedKeys, load_trusted_keys

_SUFFIX = ".dsse.json"


class LineageNode(BaseModel):
    """One asset in a lineage graph and what was found wrong with it, if anything."""

    digest: str
    stage: str | None = None
    media_type: str | None = None
    record_digest: str | None = None
    model: str | None = None
    verdict: Verdict | None = None
    problems: list[str] = []
    parents: list["LineageNode"] = []
    record: LineageRecord | None = Field(default=None, exclude=True)


def _short(digest: str) -> str:
    return digest[:12]


class LineageReader:
    """Reads and verifies the lineage records of one store against the ``trusted`` keys."""

    def __init__(self, store: ObjectStore, trusted: TrustedKeys) -> None:
        self.store = store
        self.records = RecordStore(store)
        self.trusted = trusted

    @classmethod
    def of(cls, store: ObjectStore, anchor: TrustAnchor) -> "LineageReader":
        """A reader that trusts the keys ``anchor``'s root certified in ``store``."""
        return cls(store, load_trusted_keys(store, anchor))

    def check(self, envelope: bytes, asset_digest: str | None = None) -> LineageRecord:
        """The record inside ``envelope`` once its signature verifies; IntegrityError if not."""
        try:
            return verify_record(envelope, self.trusted.lineage, expected_digest=asset_digest)
        except UnknownSigner as error:
            raise IntegrityError(self.trusted.why_untrusted(error.key_ids)) from None

    def read(self, asset_digest: str) -> LineageRecord:
        """The verified producing record of an asset (ObjectNotFound when there is none)."""
        return self.check(self.records.read(asset_digest), asset_digest)

    def records_under(self, prefix: str) -> Iterator[tuple[str, LineageRecord]]:
        """(key, verified record) for every envelope under ``prefix``; the first bad one raises."""
        for key in self.store.list(prefix):
            if not key.endswith(_SUFFIX):
                continue
            try:
                yield key, self.check(self.store.get(key))
            except IntegrityError as error:
                raise IntegrityError(
                    f"{self.store.uri(key)}: {error}. Run `factory verify` on the assets "
                    "that descend from it"
                ) from None

    def producing_records(self) -> dict[str, LineageRecord]:
        """Every asset's producing record, verified, by asset digest."""
        return {record.asset.digest: record for _, record in self.records_under(RECORDS_PREFIX)}

    def reuse_records(self) -> Iterator[LineageRecord]:
        """Every record of a cache reuse, verified."""
        for _, record in self.records_under(REUSES_PREFIX):
            yield record

    def walk(self, digest: str) -> "LineageGraph":
        """The lineage graph of ``digest``, with every problem found on the way.

        Each record's signature is verified and each child's link to its parent's record
        digest is compared with the record found; nodes shared by several children are
        walked once.
        """
        graph = LineageGraph(self)
        graph.root = graph._node(digest, None)
        return graph


class LineageGraph:
    """A walked lineage: the root's tree, its nodes in walk order, and the problems found."""

    def __init__(self, reader: LineageReader) -> None:
        self.reader = reader
        self.root: LineageNode | None = None
        self.seen: dict[str, LineageNode] = {}
        self.problems: list[str] = []

    @property
    def verified(self) -> list[LineageNode]:
        """The nodes whose records verified, in walk order."""
        return [node for node in self.seen.values() if node.record is not None]

    def _node(self, digest: str, expected_record: str | None) -> LineageNode:
        if digest in self.seen:
            node = self.seen[digest]
            if expected_record is not None and node.record_digest not in (None, expected_record):
                self.fail(node, _link_problem(digest, node.record_digest, expected_record))
            return node
        node = LineageNode(digest=digest)
        self.seen[digest] = node
        try:
            envelope = self.reader.records.read(digest)
        except ObjectNotFound:
            self.fail(node, f"asset {_short(digest)}: no lineage record (deleted or never written)")
            return node
        node.record_digest = record_digest(envelope)
        if expected_record is not None and node.record_digest != expected_record:
            self.fail(node, _link_problem(digest, node.record_digest, expected_record))
        try:
            record = self.reader.check(envelope, digest)
        except IntegrityError as error:
            self.fail(node, f"asset {_short(digest)}: record rejected: {error}")
            return node
        node.record = record
        node.stage = record.stage.name
        node.media_type = record.asset.media_type
        node.model = record.model.name if record.model else None
        node.verdict = record.verdict
        node.parents = [
            self._node(parent.digest, parent.record_digest) for parent in record.parents
        ]
        return node

    def fail(self, node: LineageNode, problem: str) -> None:
        node.problems.append(problem)
        self.problems.append(problem)


def _link_problem(digest: str, found: str | None, expected: str) -> str:
    return (
        f"asset {_short(digest)}: its record hashes to {_short(found or '')}… but its child "
        f"links to record {_short(expected)}… (the record was replaced or altered)"
    )
