-- stg_lineage_parents: the edges of the lineage graph, child asset to each input asset.
-- Grain: asset_digest, position (the parent's place in the record's parent list).

with source as (

    select * from raw_lineage_parents

),

final as (

    select
        asset_digest,
        position,
        parent_digest,
        parent_record_digest

    from source

)

select * from final
