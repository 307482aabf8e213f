-- utilization_by_worker: busy over available seconds per worker, over every hour.

select
    worker_id,
    any_value(device_class) as device_class,
    sum(busy_seconds) as busy_seconds,
    sum(available_seconds) as available_seconds,
    sum(busy_seconds) filter (where available_seconds > 0)
    / nullif(sum(available_seconds), 0) as utilization

from utilization
group by worker_id
order by worker_id
