"""A segment's takes: each round renders, composites and encodes every open segment,
then gates them together; the gate's rejections are taken again with the next seed or model.
"""

from typing import Any

from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from factory.assets import RunRecord, StageResult
from factory.orders import Order
from quality.thresholds import Thresholds
from storage.cache import CacheMode
from tasks.chain import SEGMENT_CHAIN, upstream_for
from tasks.gate import GATE
from tasks.judging import gates_expected
from tasks.reuse import Reused
from tasks.stage_tasks import STAGE_TASKS

# A stage's output: reused by the reuse pass, or still to come from its task.
Staged = StageResult | PrefectFuture[StageResult]
# Gates of one round that run at once, and so share a validation (a round of a larger
# order is judged in validations of up to this many segments).
GATE_THREADS = 16
# The gate judges the encoded segment, last in every chain; a round submits the rest first.
assert SEGMENT_CHAIN[-1] is GATE
_BEFORE_GATE = SEGMENT_CHAIN[:-1]


class Takes:
    """Every segment's takes so far: accepted gate outputs, and the runs it took."""

    def __init__(self) -> None:
        self.accepted: dict[int, StageResult] = {}
        self.exhausted: dict[int, StageResult] = {}
        self.runs: list[RunRecord] = []

    def accepted_in_order(self) -> list[StageResult]:
        return [self.accepted[index] for index in sorted(self.accepted)]

    def report(self, order: Order) -> str:
        """Why the order failed: each exhausted segment, its last verdict's failures."""
        lines = [f"order {order.id}: quality gate rejected every take of a segment"]
        for index, gate in sorted(self.exhausted.items()):
            assert gate.verdict is not None
            tried = ", ".join(order.segments[index].ladder)
            lines.append(
                f"segment {index}: {order.attempts(index)} takes ({tried}) all rejected; "
                f"the last (take {gate.verdict.attempt}):"
            )
            lines.append(gate.verdict.describe())
        lines.append(
            "Loosen the thresholds (FACTORY_QC_THRESHOLDS), allow more attempts "
            "(quality.attempts) or add a model to the segment's escalation ladder."
        )
        return "\n".join(lines)


def run_takes(
    shared: dict[str, Any],
    order: Order,
    thresholds: Thresholds,
    cache: CacheMode,
    reused: Reused,
) -> Takes:
    """Take every segment through the chain until its gate accepts it or its takes run out.

    Each round submits one take of every segment still open (stage tasks run only for
    what the reuse pass did not find), then judges the round's segments together
    (``_judge_round``): a rejected segment is taken again with its next seed or model
    (``Segment.take``). ``shared`` holds the resources, order, production and context every
    stage task takes, quoted.
    """
    takes = Takes()
    attempt = {index: found.attempt for index, found in enumerate(reused.segments)}
    found = {index: found.chain for index, found in enumerate(reused.segments)}
    takes.runs = [result.run for segment in reused.segments for result in segment.earlier]
    open_segments = list(range(len(order.segments)))
    while open_segments:
        chains: dict[int, list[Staged]] = {}
        for index in open_segments:
            outputs: list[Staged] = list(found.pop(index, []))
            for spec in _BEFORE_GATE[len(outputs) :]:
                outputs.append(
                    STAGE_TASKS[spec.name].submit(
                        **shared,
                        cache=cache,
                        index=index,
                        upstream=upstream_for(spec, outputs),
                        attempt=attempt[index],
                    )
                )
            chains[index] = outputs
        results = {
            index: [resolved(output) for output in outputs] for index, outputs in chains.items()
        }
        for index, judged in _judge_round(shared, thresholds, cache, results, attempt).items():
            results[index].append(judged)
        open_segments = []
        for index, chain in results.items():
            takes.runs += [result.run for result in chain]
            gate = chain[-1]
            if gate.verdict is not None and gate.verdict.passed:
                takes.accepted[index] = gate
            elif attempt[index] < order.attempts(index):
                attempt[index] += 1
                open_segments.append(index)
            else:
                takes.exhausted[index] = gate
    return takes


def _judge_round(
    shared: dict[str, Any],
    thresholds: Thresholds,
    cache: CacheMode,
    chains: dict[int, list[StageResult]],
    attempt: dict[int, int],
) -> dict[int, StageResult]:
    """The gate of every chain that has none yet, the gates side by side in their own threads.

    They start once the round's last encode is done, so that they judge their segments in
    one validation (``tasks.judging``) instead of one each, and they measure one at a
    time, so that neither a render nor another gate shares the cores with one.
    """
    todo = [index for index, chain in chains.items() if len(chain) < len(SEGMENT_CHAIN)]
    if not todo:
        return {}
    gate = STAGE_TASKS[GATE.name]
    threads = min(len(todo), GATE_THREADS)
    # Only the first wave is announced: a gate of the next wave starts when one of the
    # first ends, and that one must not wait for it. Later waves share when they meet.
    with (
        gates_expected(thresholds, threads),
        ThreadPoolTaskRunner(max_workers=threads) as runner,
    ):
        futures = {
            index: runner.submit(
                gate,
                parameters={
                    **shared,
                    "cache": cache,
                    "index": index,
                    "upstream": upstream_for(GATE, chains[index]),
                    "attempt": attempt[index],
                },
            )
            for index in todo
        }
        return {index: future.result() for index, future in futures.items()}


def resolved(stage: Staged) -> StageResult:
    return stage if isinstance(stage, StageResult) else stage.result()
