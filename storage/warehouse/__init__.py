"""The factory floor warehouse: floor events, availability and verified lineage in DuckDB.

``Warehouse(path).ingest(store)`` copies what the factory wrote to the object store
into one DuckDB file, incrementally and idempotently; the SQL models in
``storage/sql`` (staging, intermediate, marts: one view per file) turn it into the
floor's numbers, and ``storage/sql/README.md`` documents every view for analysts.

One module a job:

* ``schema``: the tables, defined once in ``storage/sql/schema.sql``
* ``ingest``: store objects → tables, lineage through ``storage.lineage_reader``
* ``models``: the config tables and the SQL views, recreated in order
* ``lineage``: lookup and ancestry over the verified records
* ``export``: Parquet to a directory or S3 (httpfs), and reading an export back
* ``summary``: the floor's numbers, from ``storage/sql/summary/*.sql``
* ``core``: ``Warehouse``, its connections and lock, and the verbs above as methods
"""

from storage.warehouse.core import Warehouse, WarehouseBusy, WarehouseMissing
from storage.warehouse.export import ExportReport, connect_export
from storage.warehouse.ingest import IngestReport
from storage.warehouse.models import MARTS
from storage.warehouse.summary import FloorSummary, summary

__all__ = [
    "MARTS",
    "ExportReport",
    "FloorSummary",
    "IngestReport",
    "Warehouse",
    "WarehouseBusy",
    "WarehouseMissing",
    "connect_export",
    "summary",
]
