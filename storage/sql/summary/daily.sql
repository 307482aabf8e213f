-- daily: cost per delivered minute by day (each order's minutes counted once).

with per_order as (

    select day, order_id, sum(cost) as cost, any_value(delivered_minutes) as minutes
    from cost_per_delivered_minute
    group by day, order_id

),

final as (

    select
        day,
        sum(cost) as cost,
        sum(minutes) as delivered_minutes,
        sum(cost) / nullif(sum(minutes), 0) as cost_per_delivered_minute

    from per_order
    group by day

)

select * from final order by day
