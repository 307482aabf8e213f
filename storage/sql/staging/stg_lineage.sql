-- stg_lineage: one row per verified lineage record (the record of one asset).
-- Grain: asset_digest. Only records whose signature verified are ever loaded.
-- rendered_seconds is frames / fps for renders (records with a model), else null.

with source as (

    select * from raw_lineage

),

final as (

    select
        asset_digest,
        record_digest,
        stage,
        stage_version,
        order_id,
        flow_run_id,
        task_run_id,
        media_type,
        size_bytes,
        uri,
        model_name,
        weights_fingerprint,
        json_extract_string(training_provenance, '$[*].source') as training_sources,
        training_provenance,
        royalty_routing,
        parameters,
        case
            when model_name is not null
                then try_cast(parameters ->> 'frames' as double)
                    / nullif(try_cast(parameters ->> 'fps' as double), 0)
        end as rendered_seconds,
        device_class,
        device_seconds,
        started,
        ended,
        cast(started as date) as day,
        key_id,
        reused_from

    from source

)

select * from final
