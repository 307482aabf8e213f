-- cache_savings: device-seconds and money the segment cache avoided.
-- Grain: day (UTC date of the hit), stage, model.
--
-- A hit avoided what the original computation of the reused asset cost. The
-- original is found in the verified lineage first: records are write-once per asset,
-- so the asset's record is the run that first made it (when that record names
-- reused_from, the record it points at). Without a record, the earliest completed
-- event with the same output digest stands in. Hits neither finds are
-- unresolved_hits and save nothing here. Avoided seconds are priced at the original
-- device class's rate; the hits' own lookup seconds are hit_cost.

with events as (

    select * from int_events_priced

),

-- Only the columns read below: this CTE is read twice, so it is materialised, and a
-- materialised CTE carries every column it selects.
floor_events as (

    select event_id, status, output_digest, device_seconds, device_class, started
    from stg_events

),

default_price as (

    select per_device_hour from price_card where device_class = 'default'

),

hits as (

    select * from floor_events
    where status = 'cache_hit'

),

reused as (

    -- the records of the reused assets (not the whole lineage: that is big)
    select asset_digest, device_seconds, device_class, reused_from
    from stg_lineage
    where asset_digest in (select output_digest from hits)

),

from_lineage as (

    select
        reused.asset_digest,
        coalesce(original.device_seconds, reused.device_seconds) as device_seconds,
        coalesce(original.device_class, reused.device_class) as device_class

    from reused
    left join stg_lineage as original
        on original.record_digest = reused.reused_from
        and original.record_digest in (
            select reused_from from reused where reused_from is not null
        )

),

from_events as (

    select
        output_digest as asset_digest,
        arg_min(device_seconds, started) as device_seconds,
        arg_min(device_class, started) as device_class

    from floor_events
    where status = 'completed' and output_digest in (select output_digest from hits)
    group by output_digest

),

resolved as (

    select
        hits.event_id,
        coalesce(from_lineage.device_seconds, from_events.device_seconds)
            as avoided_device_seconds,
        coalesce(from_lineage.device_class, from_events.device_class) as original_device_class,
        case
            when from_lineage.asset_digest is not null then 'lineage'
            when from_events.asset_digest is not null then 'event'
        end as resolved_from

    from hits
    left join from_lineage on from_lineage.asset_digest = hits.output_digest
    left join from_events on from_events.asset_digest = hits.output_digest

),

outcomes as (

    select
        events.day,
        events.stage,
        events.attributed_model as model,
        events.status,
        events.device_seconds,
        events.cost,
        resolved.avoided_device_seconds,
        resolved.avoided_device_seconds / 3600.0
        * coalesce(original_price.per_device_hour, default_price.per_device_hour)
            as avoided_cost,
        resolved.resolved_from,
        events.currency

    from events
    cross join default_price
    left join resolved on resolved.event_id = events.event_id
    left join price_card as original_price
        on original_price.device_class = resolved.original_device_class
    where events.status in ('completed', 'cache_hit')

),

final as (

    select
        day,
        stage,
        model,
        count(*) filter (where status = 'cache_hit') as hits,
        count(*) filter (where status = 'completed') as computed,
        count(*) filter (where status = 'cache_hit') / count(*) as hit_rate,
        coalesce(sum(device_seconds) filter (where status = 'cache_hit'), 0)
            as hit_device_seconds,
        coalesce(sum(cost) filter (where status = 'cache_hit'), 0) as hit_cost,
        coalesce(sum(avoided_device_seconds), 0) as avoided_device_seconds,
        coalesce(sum(avoided_cost), 0) as avoided_cost,
        coalesce(sum(avoided_cost), 0)
        - coalesce(sum(cost) filter (where status = 'cache_hit'), 0) as net_saved,
        count(*) filter (where resolved_from = 'lineage') as resolved_from_lineage,
        count(*) filter (where resolved_from = 'event') as resolved_from_events,
        count(*) filter (where status = 'cache_hit' and resolved_from is null)
            as unresolved_hits,
        any_value(currency) as currency

    from outcomes
    group by day, stage, model

)

select * from final
