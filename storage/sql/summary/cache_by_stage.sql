-- cache_by_stage: what the cache saved per stage, in the chain's order.

select
    stage,
    sum(hits) as hits,
    sum(computed) as computed,
    sum(avoided_device_seconds) as avoided_device_seconds,
    sum(avoided_cost) as avoided_cost,
    sum(net_saved) as net_saved

from cache_savings
group by stage
order by list_position(['ingest', 'render', 'composite', 'encode', 'gate', 'assemble'], stage)
