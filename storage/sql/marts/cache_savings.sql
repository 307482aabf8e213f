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
--
-- Counts and the hits' own cost come from every completed and hit event; what the
-- hits avoided is worked out for the hits alone (an eighth of the events, or so) and
-- joined on per day, stage and model.

with events as (

    select * from int_events_priced
    where status in ('completed', 'cache_hit')

),

default_price as (

    select per_device_hour from price_card where device_class = 'default'

),

hits as (

    select day, stage, attributed_model as model, output_digest
    from int_events_attributed
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

    -- only for the hits the lineage did not resolve: it wins where it has a record
    from stg_events
    where status = 'completed'
        and output_digest in (
            select output_digest from hits
            where output_digest not in (select asset_digest from from_lineage)
        )
    group by output_digest

),

resolved as (

    select
        hits.day,
        hits.stage,
        hits.model,
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

avoided as (

    select
        resolved.day,
        resolved.stage,
        resolved.model,
        sum(resolved.avoided_device_seconds) as avoided_device_seconds,
        sum(
            resolved.avoided_device_seconds / 3600.0
            * coalesce(original_price.per_device_hour, default_price.per_device_hour)
        ) as avoided_cost,
        count(*) filter (where resolved.resolved_from = 'lineage') as resolved_from_lineage,
        count(*) filter (where resolved.resolved_from = 'event') as resolved_from_events,
        count(*) filter (where resolved.resolved_from is null) as unresolved_hits

    from resolved
    cross join default_price
    left join price_card as original_price
        on original_price.device_class = resolved.original_device_class
    group by resolved.day, resolved.stage, resolved.model

),

counted as (

    select
        day,
        stage,
        attributed_model as model,
        count(*) filter (where status = 'cache_hit') as hits,
        count(*) filter (where status = 'completed') as computed,
        count(*) filter (where status = 'cache_hit') / count(*) as hit_rate,
        coalesce(sum(device_seconds) filter (where status = 'cache_hit'), 0)
            as hit_device_seconds,
        coalesce(sum(cost) filter (where status = 'cache_hit'), 0) as hit_cost,
        any_value(currency) as currency

    from events
    group by day, stage, attributed_model

),

final as (

    select
        counted.day,
        counted.stage,
        counted.model,
        counted.hits,
        counted.computed,
        counted.hit_rate,
        counted.hit_device_seconds,
        counted.hit_cost,
        coalesce(avoided.avoided_device_seconds, 0) as avoided_device_seconds,
        coalesce(avoided.avoided_cost, 0) as avoided_cost,
        coalesce(avoided.avoided_cost, 0) - counted.hit_cost as net_saved,
        coalesce(avoided.resolved_from_lineage, 0) as resolved_from_lineage,
        coalesce(avoided.resolved_from_events, 0) as resolved_from_events,
        coalesce(avoided.unresolved_hits, 0) as unresolved_hits,
        counted.currency

    from counted
    left join avoided
        on avoided.day = counted.day
        and avoided.stage = counted.stage
        and avoided.model = counted.model

)

select * from final
