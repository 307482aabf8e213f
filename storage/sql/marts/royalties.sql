-- royalties: what each rights holder is owed for the minutes delivered.
-- Grain: day (UTC delivery date), holder, model.
--
-- Royalties accrue once per delivered minute per rights holder: a delivery is an order's
-- deliverable handed over (int_deliveries), so re-delivering the same bytes for the
-- same order owes nothing more, while a new order for the same bytes owes again.
-- Each delivery's minutes are split by its renders' seconds per model
-- (int_deliverable_models), then by the model's royalty_routing shares, and priced at
-- the price card's royalty_per_delivered_minute. training_sources lists what the
-- model was trained on, from the signed lineage record. Deliveries without verified
-- lineage appear with holder and model null and royalty null: owed, but to whom is
-- unknown until their records are ingested.

with delivered as (

    select * from int_deliverable_models

),

rate as (

    select per_delivered_minute, currency from royalty_rate

),

routed as (

    select
        delivered.day,
        delivered.delivery_event_id,
        delivered.model_name,
        delivered.training_sources,
        delivered.delivered_minutes,
        unnest(
            from_json(delivered.royalty_routing, '[{"holder": "VARCHAR", "share": "DOUBLE"}]')
        ) as route

    from delivered
    where delivered.attributed

),

attributed as (

    select
        day,
        route.holder as holder,
        model_name as model,
        training_sources,
        delivery_event_id,
        delivered_minutes * route.share as delivered_minutes

    from routed

),

unattributed as (

    select
        day,
        null::varchar as holder,
        null::varchar as model,
        null::varchar[] as training_sources,
        delivery_event_id,
        delivered_minutes

    from delivered
    where not attributed

),

final as (

    select
        lines.day,
        lines.holder,
        lines.model,
        any_value(lines.training_sources) as training_sources,
        count(distinct lines.delivery_event_id) as deliveries,
        sum(lines.delivered_minutes) as delivered_minutes,
        case
            when lines.holder is not null
                then sum(lines.delivered_minutes) * any_value(rate.per_delivered_minute)
        end as royalty,
        any_value(rate.currency) as currency

    from (
        select * from attributed
        union all
        select * from unattributed
    ) as lines
    cross join rate
    group by lines.day, lines.holder, lines.model

)

select * from final
