"""A segment's takes: each round renders, composites, encodes and gates every open
segment; the gate's rejections are taken again with the next seed or model.
"""

from typing import Any

from prefect.futures import PrefectFuture

from factory.assets import RunRecord, StageResult
from factory.orders import Order
from storage.cache import CacheMode
from tasks.chain import SEGMENT_CHAIN, upstream_for
from tasks.reuse import Reused
from tasks.stage_tasks import STAGE_TASKS

# A stage's output: reused by the reuse pass, or still to come from its task.
Staged = StageResult | PrefectFuture[StageResult]


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


def run_takes(shared: dict[str, Any], order: Order, cache: CacheMode, reused: Reused) -> Takes:
    """Take every segment through the chain until its gate accepts it or its takes run out.

    Each round submits one take of every segment still open (stage tasks run only for
    what the reuse pass did not find), then waits for the gates: a rejected segment is
    taken again with its next seed or model (``Segment.take``). ``shared`` holds the
    resources, order, production and context every stage task takes, quoted.
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
            for spec in SEGMENT_CHAIN[len(outputs) :]:
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
        open_segments = []
        for index, outputs in chains.items():
            results = [resolved(output) for output in outputs]
            takes.runs += [result.run for result in results]
            gate = results[-1]
            if gate.verdict is not None and gate.verdict.passed:
                takes.accepted[index] = gate
            elif attempt[index] < order.attempts(index):
                attempt[index] += 1
                open_segments.append(index)
            else:
                takes.exhausted[index] = gate
    return takes


def resolved(stage: Staged) -> StageResult:
    return stage if isinstance(stage, StageResult) else stage.result()
