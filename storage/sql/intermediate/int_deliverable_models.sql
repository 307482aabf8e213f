-- int_deliverable_models: each delivery's minutes, split by the models that rendered it.
-- Grain: order_id, deliverable_digest, model_name (one delivery: int_deliveries; a
-- re-delivery of the same bytes for the same order adds nothing here).
--
-- Walks the verified lineage from each delivered deliverable down to its renders
-- (records with a model). A model's share of the deliverable is its renders' seconds
-- (frames / fps) over all the deliverable's rendered seconds; when no render says
-- how long it is, renders share equally. Deliveries without verified lineage get
-- one row with model_name null.

with recursive

deliveries as (

    select
        delivery_event_id,
        order_id,
        flow_run_id,
        deliverable_digest,
        delivered_minutes,
        day

    from int_deliveries

),

-- Read once: the walk below joins it at every level.
edges as materialized (

    select asset_digest, parent_digest from stg_lineage_parents

),

walk(deliverable_digest, asset_digest, depth) as (

    select distinct deliverable_digest, deliverable_digest, 0
    from deliveries

    union

    select walk.deliverable_digest, edges.parent_digest, walk.depth + 1
    from walk
    join edges on edges.asset_digest = walk.asset_digest
    where walk.depth < 64

),

renders as (

    select distinct
        reached.deliverable_digest,
        lineage.asset_digest,
        lineage.model_name,
        lineage.rendered_seconds,
        lineage.royalty_routing,
        lineage.training_sources,
        lineage.started

    from (select distinct deliverable_digest, asset_digest from walk) as reached
    join stg_lineage as lineage on lineage.asset_digest = reached.asset_digest
    where lineage.model_name is not null

),

models as (

    select
        deliverable_digest,
        model_name,
        count(*) as renders,
        sum(coalesce(rendered_seconds, 0)) as rendered_seconds,
        -- the routing and provenance of the model's most recent render
        arg_max(royalty_routing, started) as royalty_routing,
        arg_max(training_sources, started) as training_sources

    from renders
    group by deliverable_digest, model_name

),

shares as (

    select
        *,
        case
            when sum(rendered_seconds) over deliverable > 0
                then rendered_seconds / sum(rendered_seconds) over deliverable
            else renders / sum(renders) over deliverable
        end as model_share

    from models
    window deliverable as (partition by deliverable_digest)

),

final as (

    select
        deliveries.day,
        deliveries.delivery_event_id,
        deliveries.order_id,
        deliveries.flow_run_id,
        deliveries.deliverable_digest,
        shares.model_name,
        shares.training_sources,
        shares.royalty_routing,
        shares.renders,
        shares.rendered_seconds,
        coalesce(shares.model_share, 1.0) as model_share,
        deliveries.delivered_minutes * coalesce(shares.model_share, 1.0) as delivered_minutes,
        shares.model_name is not null as attributed

    from deliveries
    left join shares using (deliverable_digest)

)

select * from final
