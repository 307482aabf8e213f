"""The factory floor warehouse: floor events, availability and verified lineage in DuckLake.

``Warehouse(location).ingest(store)`` copies what the factory wrote to the object store
into a DuckLake (a SQLite or PostgreSQL catalog, Parquet data files in a directory or
on S3), incrementally and idempotently, while any number of readers query it; the SQL
models in ``storage/sql`` (staging, intermediate, marts: one view per file, kept in
the lake's catalog) turn it into the floor's numbers, and ``storage/sql/README.md``
documents every view for analysts.

One module a job:

* ``schema``: the tables, defined once in ``storage/sql/schema.sql``
* ``ingest``: store objects → tables, lineage through ``storage.lineage_reader``
* ``models``: the config tables and the SQL models (views; a few tables ingest keeps)
* ``lineage``: lookup and ancestry over the verified records
* ``lineage_index``: the same records in SQLite beside the catalog, for ancestry in ms
* ``export``: Parquet to a directory or S3 (httpfs), one DuckDB file, reading an export
* ``summary``: the floor's numbers, from ``storage/sql/summary/*.sql``
* ``lake``: where the lake is, this process's DuckDB with it attached, commit retries
* ``extensions``: DuckDB extensions from their wheels, S3 settings for httpfs
* ``core``: ``Warehouse``, its connections, and the verbs above as methods
"""

from storage.warehouse.core import Warehouse
from storage.warehouse.export import ExportReport, connect_export
from storage.warehouse.ingest import IngestReport
from storage.warehouse.lake import WarehouseBusy, WarehouseLocation, WarehouseMissing
from storage.warehouse.models import MARTS
from storage.warehouse.summary import FloorSummary, summary

__all__ = [
    "MARTS",
    "ExportReport",
    "FloorSummary",
    "IngestReport",
    "Warehouse",
    "WarehouseBusy",
    "WarehouseLocation",
    "WarehouseMissing",
    "connect_export",
    "summary",
]
