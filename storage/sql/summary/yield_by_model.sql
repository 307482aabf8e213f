-- yield_by_model: passes and yield per model, over every day.

select
    model,
    sum(attempted_passes) as attempted_passes,
    sum(accepted_passes) as accepted_passes,
    sum(accepted_passes) / sum(attempted_passes) as yield,
    sum(first_pass_accepted) / nullif(sum(segments), 0) as first_pass_yield

from yield
group by model
order by model
