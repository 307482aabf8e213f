-- stage_latency: wall-clock p50 and p95 per stage against the declared budget.
-- Grain: stage (plus one 'end_to_end' row).
--
-- Per stage: the attempts that computed an answer (completed, rejected); cache hits
-- computed nothing (a lookup of an earlier output) and are counted apart (cache_hits,
-- cache_hit_p50_ms), failed and retried attempts are left out. The budget is for
-- computing a stage, so only computed attempts are held against it. end_to_end: each delivered flow run, from its
-- first event's start to its last event's end. Percentiles interpolate linearly
-- (quantile_cont). budget_p95_ms comes from the latency budget; within_budget is
-- p95_ms <= budget_p95_ms; over_budget_share is the share of attempts slower than it.
-- Stages with a budget but no attempts yet appear with attempts 0 and null figures.

with events as (

    select * from stg_events

),

budget as (

    select * from latency_budget

),

stage_attempts as (

    select stage, wall_ms
    from events
    where status in ('completed', 'rejected')

),

hits as (

    select
        stage,
        count(*) as cache_hits,
        quantile_cont(wall_ms, 0.5) as cache_hit_p50_ms

    from events
    where status = 'cache_hit'
    group by stage

),

delivered_runs as (

    select
        'end_to_end' as stage,
        date_diff('microsecond', min(started), max(ended)) / 1000.0 as wall_ms

    from events
    group by flow_run_id
    having bool_or(is_delivery)

),

attempts as (

    select * from stage_attempts
    union all
    select * from delivered_runs

),

stats as (

    select
        stage,
        count(*) as attempts,
        quantile_cont(wall_ms, 0.5) as p50_ms,
        quantile_cont(wall_ms, 0.95) as p95_ms,
        max(wall_ms) as max_ms

    from attempts
    group by stage

),

over_budget as (

    select
        attempts.stage,
        count(*) filter (where attempts.wall_ms > budget.p95_budget_ms) / count(*) as share

    from attempts
    join budget on budget.stage = attempts.stage
    group by attempts.stage

),

final as (

    select
        coalesce(stats.stage, budget.stage) as stage,
        case coalesce(stats.stage, budget.stage)
            when 'ingest' then 1
            when 'render' then 2
            when 'composite' then 3
            when 'encode' then 4
            when 'gate' then 5
            when 'assemble' then 6
            when 'end_to_end' then 7
            else 8
        end as stage_order,
        coalesce(stats.attempts, 0) as attempts,
        stats.p50_ms,
        stats.p95_ms,
        stats.max_ms,
        coalesce(hits.cache_hits, 0) as cache_hits,
        hits.cache_hit_p50_ms,
        budget.p95_budget_ms as budget_p95_ms,
        stats.p95_ms <= budget.p95_budget_ms as within_budget,
        budget.p95_budget_ms - stats.p95_ms as headroom_ms,
        over_budget.share as over_budget_share

    from stats
    full outer join budget on budget.stage = stats.stage
    left join over_budget on over_budget.stage = stats.stage
    left join hits on hits.stage = coalesce(stats.stage, budget.stage)

)

select * from final
