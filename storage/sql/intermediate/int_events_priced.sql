-- int_events_priced: every event with the price of its device-seconds.
-- Grain: event_id (the columns of int_events_attributed, plus the price applied).
--
-- per_device_hour is the event's device class's rate on the price card, or the
-- 'default' row's for a class the card does not name; cost = device_seconds / 3600
-- × per_device_hour, in the card's currency. The marts that put money on device
-- time (cost_per_delivered_minute, cache_savings) price it here, once.

with events as (

    select * from int_events_attributed

),

default_price as (

    select per_device_hour, currency from price_card where device_class = 'default'

),

final as (

    select
        events.*,
        coalesce(price_card.per_device_hour, default_price.per_device_hour) as per_device_hour,
        default_price.currency,
        events.device_seconds / 3600.0
        * coalesce(price_card.per_device_hour, default_price.per_device_hour) as cost

    from events
    cross join default_price
    left join price_card on price_card.device_class = events.device_class

)

select * from final
