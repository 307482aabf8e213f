-- yield: accepted / attempted segment passes and device-seconds, and first-pass yield.
-- Grain: day (UTC date a pass started), model.
--
-- A pass is one trip of a segment through render -> composite -> encode (-> gate),
-- see int_segment_passes. Rejected, failed and incomplete passes count against yield.
-- first_pass_yield: segments accepted on their first pass with no retry, over the
-- segments whose first pass started that day.

with passes as (

    select * from int_segment_passes

),

final as (

    select
        day,
        model,
        count(*) filter (where pass_no = 1) as segments,
        count(*) as attempted_passes,
        count(*) filter (where outcome = 'accepted') as accepted_passes,
        count(*) filter (where outcome = 'rejected') as rejected_passes,
        count(*) filter (where outcome = 'failed') as failed_passes,
        count(*) filter (where outcome = 'incomplete') as incomplete_passes,
        count(*) filter (where first_pass_accepted) as first_pass_accepted,
        count(*) filter (where outcome = 'accepted') / count(*) as yield,
        count(*) filter (where first_pass_accepted)
        / nullif(count(*) filter (where pass_no = 1), 0) as first_pass_yield,
        sum(device_seconds) as attempted_device_seconds,
        coalesce(sum(device_seconds) filter (where outcome = 'accepted'), 0)
            as accepted_device_seconds,
        coalesce(sum(device_seconds) filter (where outcome = 'accepted'), 0)
        / nullif(sum(device_seconds), 0) as device_seconds_yield

    from passes
    group by day, model

)

select * from final
