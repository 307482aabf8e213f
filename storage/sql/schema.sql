-- The warehouse's tables: the one definition of what ingest loads and what the models read.
-- Run by every writer (create ... if not exists); the column names and types ingest
-- loads by are read back from DuckDB's catalog, not written down a second time.

-- Facts, loaded from the object store by `factory floor ingest`.

create table if not exists raw_events (
    event_id varchar primary key,
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

create table if not exists raw_availability (
    worker_id varchar not null,
    device_class varchar not null,
    up_from timestamp not null,
    up_to timestamp not null,
    source_uri varchar not null,
    primary key (worker_id, up_from, up_to)
);

create table if not exists raw_lineage (
    asset_digest varchar primary key,
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

create table if not exists raw_lineage_parents (
    asset_digest varchar not null,
    position integer not null,
    parent_digest varchar not null,
    parent_record_digest varchar not null,
    primary key (asset_digest, position)
);

create index if not exists raw_lineage_parents_child on raw_lineage_parents (asset_digest);
create index if not exists raw_lineage_parents_parent on raw_lineage_parents (parent_digest);
create index if not exists raw_lineage_record on raw_lineage (record_digest);

-- Bookkeeping: what ingest loaded, and what it refused (tried again every time).

create table if not exists ingested_objects (
    uri varchar primary key,
    kind varchar not null,
    rows integer not null,
    ingested_at timestamp not null
);

create table if not exists rejected_objects (
    uri varchar primary key,
    kind varchar not null,
    reason varchar not null,
    seen_at timestamp not null
);

-- Config, reloaded from factory/price_card.toml and factory/latency_budget.toml by
-- every ingest.

create table if not exists price_card (
    device_class varchar primary key,
    per_device_hour double not null,
    currency varchar not null
);

create table if not exists royalty_rate (
    per_delivered_minute double not null,
    currency varchar not null
);

create table if not exists latency_budget (
    stage varchar primary key,
    p95_budget_ms double not null
);
