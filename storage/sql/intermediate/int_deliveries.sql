-- int_deliveries: one row per delivery, the unit delivered minutes and royalties count.
-- Grain: order_id, deliverable_digest.
--
-- A delivery is a deliverable handed over for an order: its key is the order id plus
-- the deliverable's digest. The first hand-over (the earliest delivery event of the
-- key) is the delivery; every later one (a re-run of the order that reproduced the
-- same bytes, typically all cache hits) is a re-delivery: counted in handovers, adding
-- no delivered minutes and no royalties. A new order id, or a changed deliverable (a
-- new digest), is a new delivery and counts in full.
-- day: the UTC date of the first hand-over's event (the day the delivery happened).

with handovers as (

    select * from stg_events
    where is_delivery and output_digest is not null

),

final as (

    select
        order_id,
        output_digest as deliverable_digest,
        arg_min(event_id, ended) as delivery_event_id,
        arg_min(flow_run_id, ended) as flow_run_id,
        arg_min(day, ended) as day,
        min(ended) as delivered_at,
        arg_min(delivered_seconds, ended) as delivered_seconds,
        arg_min(delivered_seconds, ended) / 60.0 as delivered_minutes,
        count(*) as handovers,
        count(*) - 1 as redeliveries,
        max(ended) as last_handed_over

    from handovers
    group by order_id, output_digest

)

select * from final
