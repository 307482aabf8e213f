-- int_events_attributed: every event with its segment pass, how that pass ended and the
-- model it worked for.
-- Grain: event_id.
--
-- A segment pass starts at a render event with attempt 1: a Prefect retry inside the
-- same task run (attempt 2, 3, ...) stays in its pass; a re-render after a rejection,
-- or a rerun of the order, is a new task run and starts the next pass.
-- pass_outcome (null for order-level events):
--   rejected    a quality gate rejected the pass (a 'rejected' event)
--   failed      an attempt failed and nothing retried it (a 'failed' event)
--   accepted    no rejection or failure, and encode completed (or was a cache hit)
--   incomplete  none of these (the run stopped, or its events are not in yet)
-- attributed_model: the event's own model, else its pass's render model; order-level
-- work (assemble, ingest: no segment_index) is attributed to '(order)'.
-- is_waste: a failed or retried attempt, or any event of a pass that was not accepted.

with events as (

    select * from stg_events

),

-- Only the columns the pass logic needs go through the window: its sort carries
-- every column it is given, and the wide event rows made it the slowest step.
numbered as (

    select
        event_id,
        order_id,
        segment_index,
        stage,
        status,
        model,
        cast(
            greatest(
                1,
                sum(case when stage = 'render' and attempt = 1 then 1 else 0 end) over (
                    partition by order_id, segment_index
                    order by started, (stage = 'render' and attempt = 1) desc
                    rows between unbounded preceding and current row
                )
            ) as integer
        ) as segment_pass

    from events
    where segment_index is not null

),

passes as (

    select
        order_id,
        segment_index,
        segment_pass,
        coalesce(max(model) filter (where stage = 'render'), max(model)) as pass_model,
        case
            when bool_or(status = 'rejected') then 'rejected'
            when bool_or(status = 'failed') then 'failed'
            when bool_or(stage = 'encode' and status in ('completed', 'cache_hit'))
                then 'accepted'
            else 'incomplete'
        end as pass_outcome

    from numbered
    group by order_id, segment_index, segment_pass

),

event_passes as (

    select
        numbered.event_id,
        numbered.segment_pass,
        passes.pass_model,
        passes.pass_outcome

    from numbered
    join passes
        on passes.order_id = numbered.order_id
        and passes.segment_index = numbered.segment_index
        and passes.segment_pass = numbered.segment_pass

),

final as (

    select
        events.*,
        event_passes.segment_pass as pass_no,
        event_passes.pass_model,
        event_passes.pass_outcome,
        coalesce(
            events.model,
            event_passes.pass_model,
            case when events.segment_index is null then '(order)' else '(unknown)' end
        ) as attributed_model,
        events.status in ('failed', 'retried')
        or coalesce(event_passes.pass_outcome, 'accepted') <> 'accepted' as is_waste

    from events
    left join event_passes on event_passes.event_id = events.event_id

)

select * from final
