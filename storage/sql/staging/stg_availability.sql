-- stg_availability: when each worker was up, overlapping or touching reports merged.
-- Grain: worker_id, up_from. Times are UTC. Workers report intervals from every flush,
-- so two reports may overlap; merging them keeps available time from counting twice.

with source as (

    select * from raw_availability

),

ordered as (

    select
        *,
        max(up_to) over (
            partition by worker_id
            order by up_from, up_to
            rows between unbounded preceding and 1 preceding
        ) as covered_until

    from source

),

islands as (

    select
        *,
        sum(case when covered_until >= up_from then 0 else 1 end) over (
            partition by worker_id
            order by up_from, up_to
            rows between unbounded preceding and current row
        ) as island

    from ordered

),

final as (

    select
        worker_id,
        arg_max(device_class, up_to) as device_class,
        min(up_from) as up_from,
        max(up_to) as up_to,
        date_diff('microsecond', min(up_from), max(up_to)) / 1e6 as available_seconds,
        count(*) as reports

    from islands
    group by worker_id, island

)

select * from final
