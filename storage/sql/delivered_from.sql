-- The orders that delivered an asset made from any of the given assets ($1, a list of
-- digests), other than the orders in $2: walks the lineage graph from parent to child.
-- Ingest asks this of each batch's lineage records, whose late arrival changes what
-- an earlier delivery's minutes are attributed to (int_deliverable_models).

with recursive made_from(asset_digest) as (

    select unnest($1::varchar[])

    union

    select parents.asset_digest
    from made_from
    join raw_lineage_parents as parents on parents.parent_digest = made_from.asset_digest

)

select distinct order_id
from raw_events
where delivered_seconds > 0
    and output_digest in (select asset_digest from made_from)
    and not list_contains($2::varchar[], order_id)
