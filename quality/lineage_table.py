"""The lineage-completeness table of one flow run, for the lineage suite.

One row per asset the run indexed (``lineage/runs/<flow run id>/``), produced or reused:
does its record verify against the trusted keys and match the digest the run index holds,
and does every parent exist (its bytes stored, its record present, verifying and the one
the child links to)? Nothing here raises on a bad record: a problem becomes a row that
fails, with the reason in ``problem``.
"""

from typing import TYPE_CHECKING

from factory.errors import FactoryError, ObjectNotFound
from factory.lineage import LineageRecord, ParentLink, record_digest
from storage.assets import asset_key
from storage.lineage import reuse_key, run_index_prefix
from storage.lineage_reader import LineageReader

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("asset_digest", "stage", "record_verified", "parent_digests", "parents_exist", "problem")


def lineage_frame(reader: LineageReader, flow_run_id: str) -> "pd.DataFrame":
    """Every asset ``flow_run_id`` indexed, with its record and parents checked."""
    import pandas as pd

    prefix = run_index_prefix(flow_run_id)
    parents = _ParentCheck(reader)
    rows = []
    for key in reader.store.list(prefix):
        name = key.removeprefix(prefix)
        if name.startswith("reuses/"):
            asset = reader.store.get(key).decode("ascii")
            expected = name.removeprefix("reuses/")
            rows.append(_row(reader, parents, asset, expected, reuse_key(asset, expected)))
        else:
            expected = reader.store.get(key).decode("ascii")
            rows.append(_row(reader, parents, name, expected, None))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(
    reader: LineageReader,
    parents: "_ParentCheck",
    asset: str,
    expected_record: str,
    reuse: str | None,
) -> dict[str, object]:
    row: dict[str, object] = {
        "asset_digest": asset,
        "stage": None,
        "record_verified": False,
        "parent_digests": [],
        # Unknown until the record verifies: the record's failure is the one to report.
        "parents_exist": None,
        "problem": "",
    }
    try:
        envelope = reader.store.get(reuse) if reuse else reader.records.read(asset)
    except ObjectNotFound:
        row["problem"] = "no lineage record"
        return row
    found = record_digest(envelope)
    if found != expected_record:
        row["problem"] = (
            f"record hashes to {found[:12]}…, the run index says {expected_record[:12]}… "
            "(replaced or altered)"
        )
        return row
    try:
        record: LineageRecord = reader.check(envelope, asset)
    except FactoryError as error:
        row["problem"] = f"record rejected: {error}"
        return row
    missing = [problem for link in record.parents if (problem := parents.problem(link))]
    row.update(
        stage=record.stage.name,
        record_verified=True,
        parent_digests=[link.digest for link in record.parents],
        parents_exist=not missing,
        problem="; ".join(missing),
    )
    return row


class _ParentCheck:
    """Whether a parent exists as its child's record says; each parent is read once."""

    def __init__(self, reader: LineageReader) -> None:
        self.reader = reader
        self.seen: dict[tuple[str, str], str] = {}

    def problem(self, link: ParentLink) -> str:
        """'' when the parent is there, else what is wrong with it."""
        key = (link.digest, link.record_digest)
        if key not in self.seen:
            self.seen[key] = self._check(link)
        return self.seen[key]

    def _check(self, link: ParentLink) -> str:
        short = link.digest[:12]
        if self.reader.store.head(asset_key(link.digest)) is None:
            return f"parent {short}… is not in the store"
        try:
            envelope = self.reader.records.read(link.digest)
        except ObjectNotFound:
            return f"parent {short}… has no lineage record"
        if record_digest(envelope) != link.record_digest:
            return f"parent {short}…'s record is not the one its child links to"
        try:
            self.reader.check(envelope, link.digest)
        except FactoryError as error:
            return f"parent {short}…'s record is rejected: {error}"
        return ""
