-- headline: the floor's numbers over everything ingested so far, in one row.
-- cost_per_delivered_minute's columns add up over its rows (each delivery's minutes
-- counted once); utilization leaves out work outside any availability.

with cost as (

    select
        (select count(distinct order_id) from int_deliveries) as delivered_orders,
        coalesce(sum(delivered_minutes), 0) as delivered_minutes,
        coalesce(sum(cost), 0) as cost,
        coalesce(sum(waste_cost), 0) as waste_cost,
        sum(cost) / nullif(sum(delivered_minutes), 0) as cost_per_delivered_minute

    from cost_per_delivered_minute

),

passes as (

    select
        coalesce(sum(attempted_passes), 0) as attempted_passes,
        coalesce(sum(accepted_passes), 0) as accepted_passes,
        sum(accepted_passes) / nullif(sum(attempted_passes), 0) as yield,
        sum(first_pass_accepted) / nullif(sum(segments), 0) as first_pass_yield

    from yield

),

use as (

    select
        coalesce(sum(busy_seconds) filter (where available_seconds > 0), 0) as busy_seconds,
        coalesce(sum(available_seconds), 0) as available_seconds,
        sum(busy_seconds) filter (where available_seconds > 0)
        / nullif(sum(available_seconds), 0) as utilization

    from utilization

),

cache as (

    select
        coalesce(sum(hits), 0) as cache_hits,
        coalesce(sum(avoided_cost), 0) as avoided_cost,
        coalesce(sum(net_saved), 0) as net_saved

    from cache_savings

),

owed as (

    select
        coalesce(sum(royalty), 0) as royalties_owed,
        coalesce(sum(delivered_minutes) filter (where holder is null), 0)
            as unattributed_minutes

    from royalties

),

final as (

    select
        royalty_rate.currency,
        cost.*,
        passes.*,
        use.*,
        cache.*,
        owed.*,
        (select count(*) from rejected_objects) as rejected_objects

    from royalty_rate, cost, passes, use, cache, owed

)

select * from final
