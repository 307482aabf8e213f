-- int_segment_passes: one row per pass of a segment through render -> composite ->
-- encode (-> gate), with how the pass ended (outcome: see int_events_attributed).
-- Grain: order_id, segment_index, pass_no.
-- first_pass_accepted: pass 1, accepted, with no retried attempt inside it.

with events as (

    select * from int_events_attributed
    where segment_index is not null

),

passes as (

    select
        order_id,
        segment_index,
        pass_no,
        coalesce(any_value(pass_model), '(unknown)') as model,
        any_value(pass_outcome) as outcome,
        min(started) as started,
        max(ended) as ended,
        cast(min(started) as date) as day,
        count(*) as events,
        sum(device_seconds) as device_seconds,
        bool_or(status = 'retried') as has_retry,
        bool_or(stage = 'render' and status = 'cache_hit') as render_reused

    from events
    group by order_id, segment_index, pass_no

),

final as (

    select
        *,
        pass_no = 1 and outcome = 'accepted' and not has_retry as first_pass_accepted

    from passes

)

select * from final
