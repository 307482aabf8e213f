-- The orders that delivered an asset made from any of the given assets ($1, a list of
-- digests), other than the orders in $2: walks the lineage graph from parent to child.
-- Ingest asks this of each batch's lineage records, whose late arrival changes what
-- an earlier delivery's minutes are attributed to (int_deliverable_models).

with recursive

-- Read once: the walk joins it at every level.
edges as materialized (

    select asset_digest, parent_digest from raw_lineage_parents

),

made_from(asset_digest) as (

    select unnest($1::varchar[])

    union

    select edges.asset_digest
    from made_from
    join edges on edges.parent_digest = made_from.asset_digest

)

select distinct order_id
from raw_events
where delivered_seconds > 0
    and output_digest in (select asset_digest from made_from)
    and not list_contains($2::varchar[], order_id)
