-- utilization: busy device-seconds / available device-seconds, per worker and hour.
-- Grain: worker_id, hour (UTC, start of the hour).
--
-- available_seconds: the part of the hour inside the worker's merged availability.
-- busy_seconds: device-seconds of the worker's events, spread over the hours their
-- wall-clock span covers (in proportion to the overlap). Work outside any reported
-- availability still counts as busy; such hours have utilization null.
-- Above 1 means more device-seconds than wall-seconds (concurrent tasks on one worker).

with availability as (

    select * from stg_availability

),

events as (

    select worker_id, device_class, started, ended, device_seconds from stg_events

),

available_hours as (

    select
        availability.worker_id,
        availability.device_class,
        slot.hour,
        date_diff(
            'microsecond',
            greatest(availability.up_from, slot.hour),
            least(availability.up_to, slot.hour + interval 1 hour)
        ) / 1e6 as available_seconds

    from availability,
        unnest(
            range(date_trunc('hour', availability.up_from), availability.up_to, interval 1 hour)
        ) as slot(hour)

),

available as (

    select
        worker_id,
        hour,
        arg_max(device_class, available_seconds) as device_class,
        sum(available_seconds) as available_seconds

    from available_hours
    group by worker_id, hour

),

-- Each event once per hour its span touches (most touch one). unnest in the select
-- list: as a lateral join (from events, unnest(...)) it cost several times more.
event_hours as (

    select
        worker_id,
        device_class,
        started,
        ended,
        device_seconds,
        unnest(
            range(
                date_trunc('hour', started),
                greatest(ended, started + interval 1 microsecond),
                interval 1 hour
            )
        ) as hour

    from events

),

busy_hours as (

    select
        worker_id,
        device_class,
        hour,
        case
            when ended > started
                then device_seconds
                    * date_diff(
                        'microsecond', greatest(started, hour), least(ended, hour + interval 1 hour)
                    )
                    / date_diff('microsecond', started, ended)
            else device_seconds
        end as busy_seconds

    from event_hours

),

busy as (

    select
        worker_id,
        hour,
        mode(device_class) as device_class,
        count(*) as events,
        sum(busy_seconds) as busy_seconds

    from busy_hours
    group by worker_id, hour

),

final as (

    select
        coalesce(available.worker_id, busy.worker_id) as worker_id,
        coalesce(available.device_class, busy.device_class) as device_class,
        coalesce(available.hour, busy.hour) as hour,
        cast(coalesce(available.hour, busy.hour) as date) as day,
        coalesce(available.available_seconds, 0) as available_seconds,
        coalesce(busy.busy_seconds, 0) as busy_seconds,
        greatest(
            coalesce(available.available_seconds, 0) - coalesce(busy.busy_seconds, 0), 0
        ) as idle_seconds,
        coalesce(busy.events, 0) as events,
        coalesce(busy.busy_seconds, 0) / nullif(available.available_seconds, 0) as utilization

    from available
    full outer join busy
        on busy.worker_id = available.worker_id
        and busy.hour = available.hour

)

select * from final
