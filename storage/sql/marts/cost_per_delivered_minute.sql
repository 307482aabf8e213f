-- cost_per_delivered_minute: what the work cost, and the minutes it delivered, per day.
-- Grain: day, order_id, model, device_class. day is the UTC date the work happened:
-- an event's day for its cost, a delivery's day for its minutes.
--
-- cost: every event's device-seconds (completed, failed, retried, rejected, cache
-- hits) priced at its device class's per-device-hour rate (int_events_priced:
-- price_card, 'default' for classes it does not name). waste: failed and retried
-- attempts, and every event of a segment pass that was not accepted (is_waste in
-- int_events_attributed).
-- delivered_minutes: the minutes of the deliveries made that day (int_deliveries: a
-- re-delivery of the same bytes for the same order adds none), allocated to models by
-- their renders' seconds in the deliverable's verified lineage (int_deliverable_models);
-- without verified lineage, by the order's accepted segments per model (or to
-- '(order)' when it has none). A model's minutes are spread over its device classes
-- by its device-seconds in the order (equally when it used none). Every additive column
-- (events, device_seconds, waste_*, cost, delivered_minutes) sums correctly over any
-- grouping of rows; cost_per_delivered_minute is this row's ratio (null when the row
-- delivered no minutes): for a grouping, divide sum(cost) by sum(delivered_minutes).

with priced as (

    select * from int_events_priced

),

delivered as (

    select * from int_deliverable_models

),

costs as (

    select
        day,
        order_id,
        attributed_model as model,
        device_class,
        any_value(per_device_hour) as per_device_hour,
        any_value(currency) as currency,
        count(*) as events,
        sum(device_seconds) as device_seconds,
        coalesce(sum(device_seconds) filter (where is_waste), 0) as waste_device_seconds,
        sum(cost) as cost,
        coalesce(sum(cost) filter (where is_waste), 0) as waste_cost

    from priced
    group by day, order_id, attributed_model, device_class

),

-- Where lineage cannot say which models made a deliverable: the order's accepted
-- segments per model. Counted from the events' passes (int_segment_passes' outcome
-- and model are each pass's pass_outcome and pass_model), so that only the orders
-- in question are grouped, not every pass of the floor.
accepted_segments as (

    select
        order_id,
        coalesce(pass_model, '(unknown)') as model,
        count(distinct segment_index) as segments

    from int_events_attributed
    where pass_outcome = 'accepted'
        and order_id in (select order_id from delivered where not attributed)
    group by order_id, coalesce(pass_model, '(unknown)')

),

model_minutes as (

    select day, order_id, model_name as model, delivered_minutes
    from delivered
    where attributed

    union all

    select
        delivered.day,
        delivered.order_id,
        coalesce(accepted_segments.model, '(order)') as model,
        delivered.delivered_minutes
        * coalesce(
            accepted_segments.segments
            / sum(accepted_segments.segments) over (
                partition by delivered.delivery_event_id
            ),
            1.0
        ) as delivered_minutes

    from delivered
    left join accepted_segments on accepted_segments.order_id = delivered.order_id
    where not delivered.attributed

),

-- A join to the model's totals rather than a window over them: the window sorted
-- every order's rows.
model_totals as (

    select order_id, model, sum(device_seconds) as device_seconds, sum(events) as events
    from costs
    group by order_id, model

),

device_shares as (

    select
        devices.order_id,
        devices.model,
        devices.device_class,
        case
            when model_totals.device_seconds > 0
                then devices.device_seconds / model_totals.device_seconds
            else devices.events / model_totals.events
        end as share

    from (
        select order_id, model, device_class, sum(device_seconds) as device_seconds,
            sum(events) as events
        from costs
        group by order_id, model, device_class
    ) as devices
    join model_totals
        on model_totals.order_id = devices.order_id
        and model_totals.model = devices.model

),

minutes as (

    select
        model_minutes.day,
        model_minutes.order_id,
        model_minutes.model,
        device_shares.device_class,
        sum(model_minutes.delivered_minutes * coalesce(device_shares.share, 1.0))
            as delivered_minutes

    from model_minutes
    left join device_shares
        on device_shares.order_id = model_minutes.order_id
        and device_shares.model = model_minutes.model
    group by all

),

final as (

    select
        coalesce(costs.day, minutes.day) as day,
        coalesce(costs.order_id, minutes.order_id) as order_id,
        coalesce(costs.model, minutes.model) as model,
        coalesce(costs.device_class, minutes.device_class) as device_class,
        coalesce(
            costs.per_device_hour,
            (select per_device_hour from price_card where device_class = minutes.device_class),
            (select per_device_hour from price_card where device_class = 'default')
        ) as per_device_hour,
        coalesce(
            costs.currency, (select currency from price_card where device_class = 'default')
        ) as currency,
        coalesce(costs.events, 0) as events,
        coalesce(costs.device_seconds, 0) as device_seconds,
        coalesce(costs.waste_device_seconds, 0) as waste_device_seconds,
        coalesce(costs.cost, 0) as cost,
        coalesce(costs.waste_cost, 0) as waste_cost,
        coalesce(minutes.delivered_minutes, 0) as delivered_minutes,
        coalesce(costs.cost, 0) / nullif(minutes.delivered_minutes, 0)
            as cost_per_delivered_minute

    from costs
    full outer join minutes
        on minutes.day = costs.day
        and minutes.order_id = costs.order_id
        and minutes.model = costs.model
        and minutes.device_class is not distinct from costs.device_class

)

select * from final
