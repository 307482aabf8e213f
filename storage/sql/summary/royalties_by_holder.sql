-- royalties_by_holder: minutes and money owed per rights holder; minutes without
-- verified lineage last.

select
    coalesce(holder, '(no verified lineage)') as holder,
    sum(delivered_minutes) as delivered_minutes,
    sum(royalty) as royalty

from royalties
group by royalties.holder
order by royalties.holder nulls last
