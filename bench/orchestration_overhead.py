"""Prefect's cost: the produce flow vs the same stage functions called in a plain loop.

    .venv/bin/python bench/orchestration_overhead.py [--order examples/demo.yaml]

Reports flow wall time ÷ the sum of the tasks' own wall times (goal ≤ 1.10),
and flow wall time ÷ a plain sequential run of the same functions without
Prefect; then the flow ratio again as `factory run` runs it in-process (no
flow-run heartbeat join, see cli.runner.local_run_settings). The flow's
wall includes closing the floor books (availability, warehouse ingest,
artifact). The ephemeral Prefect API is started (by a tiny warm-up run) before
timing, since a server's start is not per-order overhead. Each variant writes
into a fresh store so neither benefits from the other's objects.
"""

import argparse
import os
import tempfile
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.common import emit, timed
from cli.runner import local_run_settings
from factory.orders import Order, load_order
from factory.settings import Settings
from media.devices import device_class
from tasks.chain import FINAL, SEGMENT_CHAIN, upstream_for
from tasks.prepare import check_order, prepare
from tasks.provenance import RunContext
from tasks.resources import open_resources
from tasks.runner import run_stage

EXAMPLES = Path(__file__).parent.parent / "examples"


def plain(order: Order, store: str) -> str:
    """The order's chain through the stage runner, without Prefect; the deliverable's digest."""
    context = RunContext(order_id=order.id, flow_run_id=f"plain-{uuid.uuid4().hex}")
    settings = Settings()
    resources = open_resources(settings, device_class(), store)
    models = check_order(order, resources.registry, settings.models_dir)
    production = prepare(order, resources, models, context)
    accepted = []
    for index in range(len(order.segments)):
        outputs: list = []
        for spec in SEGMENT_CHAIN:
            job = spec.plan(order, production, index, upstream_for(spec, outputs))
            outputs.append(run_stage(resources, job, context, "use"))
        # The first take only: the shipped thresholds accept the tiny model's segments.
        gate = outputs[-1]
        if not gate.verdict.passed:
            raise RuntimeError(f"segment {index}: {gate.verdict.describe()}")
        accepted.append(gate)
    job = FINAL.plan(order, production, None, accepted)
    return run_stage(resources, job, context, "use").asset.digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", type=Path, default=EXAMPLES / "demo.yaml")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    os.environ.setdefault("FACTORY_HOME", str(work / "home"))
    from flows.produce import produce

    produce(load_order(EXAMPLES / "tiny.yaml"), str(work / "warm-up"))
    order = load_order(args.order)
    plain_s, plain_digest = timed(lambda: plain(order, str(work / "plain")))
    flow_s, delivery = timed(lambda: produce(order, str(work / "flow")))
    tasks_s = sum(run.wall_seconds for run in delivery.runs)
    device_s = sum(run.device_seconds for run in delivery.runs)
    # As `factory run` runs it in-process against the ephemeral API: no heartbeat join.
    with local_run_settings():
        cli_flow_s, cli_delivery = timed(lambda: produce(order, str(work / "flow-cli")))
    cli_tasks_s = sum(run.wall_seconds for run in cli_delivery.runs)
    emit(
        "orchestration_overhead",
        {
            "order": args.order.name,
            "segments": len(order.segments),
            "task_runs": len(delivery.runs),
            "flow_wall_s": round(flow_s, 3),
            "sum_task_wall_s": round(tasks_s, 3),
            "sum_device_s": round(device_s, 3),
            "plain_loop_s": round(plain_s, 3),
            "ratio_flow_vs_tasks": round(flow_s / tasks_s, 4),
            "ratio_flow_vs_plain_loop": round(flow_s / plain_s, 4),
            "cli_flow_wall_s": round(cli_flow_s, 3),
            "cli_sum_task_wall_s": round(cli_tasks_s, 3),
            "cli_ratio_flow_vs_tasks": round(cli_flow_s / cli_tasks_s, 4),
            "both_delivered": bool(plain_digest and delivery.deliverable.digest),
            "goal": "ratio_flow_vs_tasks <= 1.10",
        },
    )


if __name__ == "__main__":
    main()
