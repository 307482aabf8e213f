-- latency: each stage's p50 and p95 against its budget, in the chain's order.

select stage, attempts, p50_ms, p95_ms, budget_p95_ms, within_budget
from stage_latency
order by stage_order, stage
