-- utilization_by_hour: busy over available seconds of all workers, per hour.

select
    hour,
    sum(busy_seconds) filter (where available_seconds > 0)
    / nullif(sum(available_seconds), 0) as utilization

from utilization
group by hour
order by hour
