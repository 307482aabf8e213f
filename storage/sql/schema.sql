-- The warehouse's tables: the one definition of what ingest loads and what the models read.
-- Run by every writer (create ... if not exists); the column names and types ingest
-- loads by are read back from the catalog, not written down a second time.
-- DuckLake has no primary keys or indexes: each table's key is named in a comment
-- (`-- key: ...`, read by storage/warehouse/schema.py), and ingest inserts only rows
-- whose key is not there yet.

-- Facts, loaded from the object store by `factory floor ingest`.

-- key: event_id
create table if not exists raw_events (
    event_id varchar not null,
    order_id varchar not null,
    flow_run_id varchar not null,
    task_run_id varchar not null,
    segment_index integer,
    stage varchar not null,
    attempt integer not null,
    model varchar,
    device_class varchar not null,
    worker_id varchar not null,
    started timestamp not null,
    ended timestamp not null,
    device_seconds double not null,
    status varchar not null,
    cache_hit boolean not null,
    bytes_in bigint not null,
    bytes_out bigint not null,
    output_digest varchar,
    delivered_seconds double not null,
    source_uri varchar not null
);

-- key: worker_id, up_from, up_to
create table if not exists raw_availability (
    worker_id varchar not null,
    device_class varchar not null,
    up_from timestamp not null,
    up_to timestamp not null,
    source_uri varchar not null
);

-- key: asset_digest
create table if not exists raw_lineage (
    asset_digest varchar not null,
    record_digest varchar not null,
    stage varchar not null,
    stage_version varchar not null,
    order_id varchar not null,
    flow_run_id varchar not null,
    task_run_id varchar not null,
    media_type varchar not null,
    size_bytes bigint not null,
    uri varchar not null,
    model_name varchar,
    weights_fingerprint varchar,
    training_provenance json,
    royalty_routing json,
    parameters json,
    device_class varchar not null,
    device_seconds double not null,
    started timestamp not null,
    ended timestamp not null,
    key_id varchar not null,
    reused_from varchar,
    package_version varchar,
    git_commit varchar,
    source_uri varchar not null
);

-- key: asset_digest, position
create table if not exists raw_lineage_parents (
    asset_digest varchar not null,
    position integer not null,
    parent_digest varchar not null,
    parent_record_digest varchar not null
);

-- Bookkeeping: what ingest loaded, and what it refused (tried again every time).

-- key: uri
create table if not exists ingested_objects (
    uri varchar not null,
    kind varchar not null,
    rows integer not null,
    ingested_at timestamp not null
);

-- key: uri (a new reason replaces the old)
create table if not exists rejected_objects (
    uri varchar not null,
    kind varchar not null,
    reason varchar not null,
    seen_at timestamp not null
);

-- Config, reloaded from factory/price_card.toml and factory/latency_budget.toml by
-- every ingest.

-- key: device_class
create table if not exists price_card (
    device_class varchar not null,
    per_device_hour double not null,
    currency varchar not null
);

create table if not exists royalty_rate (
    per_delivered_minute double not null,
    currency varchar not null
);

-- key: stage
create table if not exists latency_budget (
    stage varchar not null,
    p95_budget_ms double not null
);

-- Bookkeeping of the writers themselves.

-- One row that every ingest batch updates: DuckLake lets two transactions append to
-- one table at once, so two ingests of the same objects would both insert them; both
-- updating this row makes the later commit a conflict, retried against the rows the
-- first one added.
create table if not exists ingest_turn (
    batches bigint not null
);

-- The digest of the views' SQL and the config tables' contents last written, so an
-- ingest rewrites them only when they change.
create table if not exists models_version (
    digest varchar not null,
    refreshed_at timestamp not null
);
