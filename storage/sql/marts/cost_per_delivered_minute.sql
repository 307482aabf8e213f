-- cost_per_delivered_minute: what every delivered minute cost, all attempts included.
-- Grain: order_id, model, device_class (day is the order's first delivery date, or
-- the date of its first event while it has not been delivered).
--
-- cost: every event's device-seconds (completed, failed, retried, rejected, cache
-- hits) priced at its device class's per-device-hour rate (int_events_priced:
-- price_card, 'default' for classes it does not name). waste: failed and retried
-- attempts, and every event of a segment pass that was not accepted (is_waste in
-- int_events_attributed).
-- cost_per_delivered_minute: this row's cost over the order's delivered minutes, so
-- the rows of one order add up to the order's cost per delivered minute. Null while
-- the order has delivered nothing.

with priced as (

    select * from int_events_priced

),

floor_events as (

    select * from stg_events

),

deliveries as (

    select
        order_id,
        sum(delivered_seconds) / 60.0 as delivered_minutes,
        cast(min(ended) as date) as delivered_on

    from floor_events
    where is_delivery
    group by order_id

),

orders as (

    select order_id, cast(min(started) as date) as first_day
    from floor_events
    group by order_id

),

final as (

    select
        coalesce(deliveries.delivered_on, orders.first_day) as day,
        priced.order_id,
        priced.attributed_model as model,
        priced.device_class,
        any_value(priced.per_device_hour) as per_device_hour,
        any_value(priced.currency) as currency,
        count(*) as events,
        sum(priced.device_seconds) as device_seconds,
        coalesce(sum(priced.device_seconds) filter (where priced.is_waste), 0)
            as waste_device_seconds,
        sum(priced.cost) as cost,
        coalesce(sum(priced.cost) filter (where priced.is_waste), 0) as waste_cost,
        deliveries.order_id is not null as delivered,
        coalesce(deliveries.delivered_minutes, 0) as delivered_minutes,
        sum(priced.cost) / nullif(deliveries.delivered_minutes, 0) as cost_per_delivered_minute

    from priced
    join orders on orders.order_id = priced.order_id
    left join deliveries on deliveries.order_id = priced.order_id
    group by
        coalesce(deliveries.delivered_on, orders.first_day),
        priced.order_id,
        priced.attributed_model,
        priced.device_class,
        deliveries.order_id,
        deliveries.delivered_minutes

)

select * from final
