-- daily: cost per delivered minute by day (the day the work, or the delivery, happened).

with final as (

    select
        day,
        sum(cost) as cost,
        sum(delivered_minutes) as delivered_minutes,
        sum(cost) / nullif(sum(delivered_minutes), 0) as cost_per_delivered_minute

    from cost_per_delivered_minute
    group by day

)

select * from final order by day
