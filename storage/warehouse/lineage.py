"""Lineage queries over the verified records in the warehouse: lookup and ancestry.

Only records that verified at ingest are in ``raw_lineage`` (and in the lineage index,
``lineage_index``), so these answer what ``storage.ancestry`` answers from the store.
The queries here run on a DuckDB connection (the lake, or an export); the tree is built
by ``build``, which the lineage index shares.
"""

import json
import re
from typing import Any

import duckdb

from factory.errors import BadInput, IntegrityError
from factory.lineage import ModelInfo
from storage.ancestry import Ancestry, AncestryNode, render_seconds, summarise

_DIGEST = re.compile(r"[0-9a-f]{64}")


def digest_literal(digest: str) -> str:
    """A SQL literal for an asset digest, after checking it is one (64 lowercase hex)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise BadInput(f"{digest!r} is not an asset digest (64 lowercase hex characters).")
    return f"'{digest}'"


def lookup(con: duckdb.DuckDBPyConnection, digest: str) -> dict[str, Any] | None:
    """The verified lineage row of one asset, or None."""
    cursor = con.execute(f"select * from raw_lineage where asset_digest = {digest_literal(digest)}")
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def ancestry_edges(
    con: duckdb.DuckDBPyConnection, digest: str, max_depth: int = 64
) -> list[tuple[str, int, str, int]]:
    """(asset, position, parent, depth) for every edge above ``digest``, via WITH RECURSIVE.

    The recursive step joins on raw_lineage_parents.asset_digest, whose index DuckDB
    probes with the handful of digests of the previous level (join filter pushdown),
    so each level costs a few index lookups rather than a scan.
    """
    # Digests go in as checked literals: a parameterised execute costs the duckdb
    # module two failed `import pandas` lookups, more than the query itself here.
    start = digest_literal(digest)
    rows = con.execute(
        f"""
        with recursive walk(asset_digest, position, parent_digest, depth) as (
            select asset_digest, position, parent_digest, 1
            from raw_lineage_parents
            where asset_digest = {start}
            union
            select parents.asset_digest, parents.position, parents.parent_digest,
                walk.depth + 1
            from walk
            join raw_lineage_parents as parents
                on parents.asset_digest = walk.parent_digest
            where walk.depth < {int(max_depth)}
        )
        select * from walk
        """
    ).fetchall()
    return shallowest(rows)


def shallowest(rows: list[tuple[str, int, str, int]]) -> list[tuple[str, int, str, int]]:
    """Each edge once, at the shallowest depth it was reached, sorted by depth."""
    # An edge reached along two paths comes back at both depths: keep the shallower.
    # (Grouping in SQL instead costs more than the whole walk.)
    depths: dict[tuple[str, int, str], int] = {}
    for asset, position, parent, depth in rows:
        key = (asset, position, parent)
        depths[key] = min(depth, depths.get(key, depth))
    return sorted(
        ((a, p, parent, d) for (a, p, parent), d in depths.items()),
        key=lambda edge: (edge[3], edge[0], edge[1]),
    )


# What the tree and its summary need of each record, in this order.
DETAIL_COLUMNS = (
    "asset_digest, stage, media_type, model_name, weights_fingerprint, "
    "training_provenance, royalty_routing, parameters"
)


def ancestry(con: duckdb.DuckDBPyConnection, digest: str, where: str) -> Ancestry:
    """``digest``'s ancestry from verified rows only; ``where`` names the warehouse in errors."""
    edges = ancestry_edges(con, digest)
    digests = sorted({digest, *(edge[2] for edge in edges)})
    literals = ", ".join(digest_literal(each) for each in digests)
    cursor = con.execute(
        f"select {DETAIL_COLUMNS} from raw_lineage where asset_digest in ({literals})"
    )
    return build(digest, edges, {row[0]: row for row in cursor.fetchall()}, where)


def build(
    digest: str,
    edges: list[tuple[str, int, str, int]],
    details: dict[str, tuple],
    where: str,
) -> Ancestry:
    """The ancestry of ``digest`` from its edges and each record's ``DETAIL_COLUMNS``.

    IntegrityError when a record of the tree is missing (rejected, or not ingested yet).
    """
    digests = sorted({digest, *(edge[2] for edge in edges)})
    missing = [d for d in digests if d not in details]
    if missing:
        what = "its own record" if digest in missing else f"ancestor {missing[0]}"
        raise IntegrityError(
            f"lineage of {digest} is incomplete in the warehouse {where}: no verified "
            f"record for {what}. It was rejected at ingest or not ingested yet: run "
            "`factory floor ingest`, and `factory verify` for the full report."
        )
    parents: dict[str, list[tuple[int, str]]] = {}
    for asset, position, parent, _ in edges:
        parents.setdefault(asset, []).append((position, parent))
    nodes: dict[str, AncestryNode] = {}
    renders: list[tuple[ModelInfo, float]] = []

    def node(current: str) -> AncestryNode:
        if current in nodes:
            return nodes[current]
        _, stage, media_type, model, fingerprint, provenance, routing, params = details[current]
        parameters = json.loads(params) if params else {}
        made = AncestryNode(
            digest=current,
            stage=stage,
            media_type=media_type,
            model=model,
            parameters=parameters,
        )
        nodes[current] = made
        if model is not None:
            info = ModelInfo(
                name=model,
                weights_fingerprint=fingerprint,
                training_provenance=json.loads(provenance),
                royalty_routing=json.loads(routing),
            )
            renders.append((info, render_seconds(parameters)))
        made.parents = [node(parent) for _, parent in sorted(parents.get(current, []))]
        return made

    return summarise(digest, node(digest), renders)
