-- stg_events: one row per task run attempt (floor event), cleaned and typed.
-- Grain: event_id. Times are UTC; wall_ms is ended - started in milliseconds.

with source as (

    select * from raw_events

),

final as (

    select
        event_id,
        order_id,
        flow_run_id,
        task_run_id,
        segment_index,
        stage,
        attempt,
        model,
        device_class,
        worker_id,
        started,
        ended,
        date_diff('microsecond', started, ended) / 1000.0 as wall_ms,
        device_seconds,
        status,
        cache_hit,
        status in ('completed', 'cache_hit') as succeeded,
        bytes_in,
        bytes_out,
        output_digest,
        delivered_seconds,
        delivered_seconds > 0 as is_delivery,
        cast(started as date) as day,
        date_trunc('hour', started) as hour

    from source

)

select * from final
