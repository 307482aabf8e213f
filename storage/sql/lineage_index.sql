-- The lineage index: the verified lineage records again, in a SQLite file beside the
-- catalog (catalog.sqlite → catalog.lineage.sqlite), for ancestry at index speed.
-- DuckLake tables have no indexes and every lake query reads the catalog first, so an
-- ancestry walk over ~1M records takes about a second on the lake; here each level of
-- the walk is a few B-tree probes. Written by the same ingest as the lake, after each
-- batch commits there: it holds only records the lake holds (a record not ingested
-- yet is absent). WAL mode: readers never block the ingest, nor it them.
-- Columns as in raw_lineage (schema.sql); timestamps ISO 8601 text (UTC), JSON as text.

create table if not exists lineage (
    asset_digest text primary key,
    record_digest text not null,
    stage text not null,
    stage_version text not null,
    order_id text not null,
    flow_run_id text not null,
    task_run_id text not null,
    media_type text not null,
    size_bytes integer not null,
    uri text not null,
    model_name text,
    weights_fingerprint text,
    training_provenance text,
    royalty_routing text,
    parameters text,
    device_class text not null,
    device_seconds real not null,
    started text not null,
    ended text not null,
    key_id text not null,
    reused_from text,
    package_version text,
    git_commit text,
    source_uri text not null
) without rowid;

-- The edges, clustered by child (an ancestry walks child → parents) and indexed by
-- parent (what was made from an asset).
create table if not exists lineage_parents (
    asset_digest text not null,
    position integer not null,
    parent_digest text not null,
    parent_record_digest text not null,
    primary key (asset_digest, position)
) without rowid;

create index if not exists lineage_parents_parent on lineage_parents (parent_digest);

-- How many records the index holds: compared with the lake's count by every ingest,
-- which copies what is missing (a crash between the two commits, a lake older than
-- the index).
create table if not exists index_state (
    records integer not null
);
