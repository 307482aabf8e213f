"""The cost of QC: the gate's device-seconds against the render's, and metric extraction speed.

    .venv/bin/python -m bench.qc [--order examples/demo.yaml] [--rounds 3] [--baseline REF]
                                 [--flow]

Renders, composites and encodes every segment of the order with the stage runner (the
tiny model, no Prefect, no cache), keeping each render's device-seconds. Then, in the same
process, it measures:

* the gate, as the flow runs it: every segment's gate job through the stage runner
  (``run_stage``: fetch, judge, sign, store, record), its device-seconds as the run record
  has them. ``side_by_side``: the round's gates in threads, announced as the flow announces
  them (``flows.takes``), so they share one validation; ``one_at_a_time``: one gate after
  another, one validation each (how the flow ran them before). QC ÷ render is the sum of
  the gates' device-seconds over the sum of the renders'.
* metric extraction (decode + every metric) in frames per second, against a bare decode to
  RGB (``media.video.decode_frames``) and, with ``--baseline REF``, against
  ``quality/metrics.py`` as it was at git REF, in the same rounds;
* one GX validation of the segment suite, of all segments at once and of one segment;
* the one-time cost of a Judge (importing GX, building the context and suites).

``--flow`` also runs the order through ``factory run`` in a fresh FACTORY_HOME with
FACTORY_LOCAL_SERVER=false, and reads the floor's events by stage from the warehouse
(``select stage, count(*), sum(device_seconds), sum(wall_ms)/1000 from stg_events group
by stage``): QC ÷ render as the floor books it.

Goal: the gates' device-seconds ≤ 5% of the renders'.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from bench.common import emit, median, timed

EXAMPLES = Path(__file__).parent.parent / "examples"
ROOT = Path(__file__).parent.parent


class Produced:
    """The order's segments up to the encode, and what the gate needs to judge them."""

    def __init__(self, order, store: str) -> None:
        from factory.settings import Settings
        from media.devices import device_class
        from tasks.chain import SEGMENT_CHAIN, upstream_for
        from tasks.gate import GATE
        from tasks.prepare import check_order, prepare
        from tasks.provenance import RunContext
        from tasks.resources import open_resources
        from tasks.runner import run_stage

        self.order = order
        self.context = RunContext(order_id=order.id, flow_run_id=f"bench-qc-{uuid.uuid4().hex}")
        settings = Settings()
        self.resources = open_resources(settings, device_class(), store)
        models = check_order(order, self.resources.registry, settings.models_dir)
        self.production = prepare(order, self.resources, models, self.context)
        self.chains = []
        for index in range(len(order.segments)):
            outputs: list = []
            for spec in SEGMENT_CHAIN:
                if spec is GATE:
                    break
                job = spec.plan(order, self.production, index, upstream_for(spec, outputs))
                outputs.append(run_stage(self.resources, job, self.context, "off"))
            self.chains.append(outputs)

    @property
    def render_device_s(self) -> list[float]:
        return [chain[0].run.device_seconds for chain in self.chains]

    def encoded(self) -> list[bytes]:
        from storage.assets import get_asset

        return [get_asset(self.resources.store, chain[-1].asset) for chain in self.chains]

    def gate(self, index: int, attempt: int):
        """Segment ``index``'s gate, run as its stage task runs it (cache off)."""
        from tasks.chain import upstream_for
        from tasks.gate import GATE
        from tasks.runner import run_stage

        upstream = upstream_for(GATE, self.chains[index])
        job = GATE.plan(self.order, self.production, index, upstream, attempt)
        return run_stage(self.resources, job, self.context, "off")

    def gates_one_at_a_time(self, attempt: int) -> list:
        return [self.gate(index, attempt) for index in range(len(self.chains))]

    def gates_side_by_side(self, attempt: int) -> list:
        from flows.takes import GATE_THREADS
        from tasks.judging import gates_expected

        count = len(self.chains)
        threads = min(count, GATE_THREADS)
        with (
            gates_expected(self.production.thresholds, threads),
            ThreadPoolExecutor(threads) as pool,
        ):
            return list(pool.map(lambda index: self.gate(index, attempt), range(count)))


def metrics_at(ref: str) -> ModuleType:
    """``quality/metrics.py`` as it was at git ``ref``, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:quality/metrics.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader(f"metrics_at_{ref}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{ref}:quality/metrics.py", "exec"), module.__dict__)
    return module


def flow_figures(order_path: Path, work: Path) -> dict:
    """``factory run ORDER`` in a fresh FACTORY_HOME, and the floor's events by stage."""
    home = work / "flow-home"
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_LOCAL_SERVER": "false"}
    for name in ("FACTORY_STORE", "FACTORY_WAREHOUSE_CATALOG", "FACTORY_WAREHOUSE_DATA"):
        env.pop(name, None)
    factory = Path(sys.executable).parent / "factory"
    start = time.perf_counter()
    subprocess.run(
        [str(factory), "run", str(order_path), "--out", str(work / "flow.mp4")],
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    os.environ["FACTORY_HOME"] = str(home)
    from factory.settings import Settings
    from storage.warehouse import Warehouse

    query = (
        "select stage, count(*), sum(device_seconds), sum(wall_ms) / 1000 "
        "from stg_events group by stage order by stage"
    )
    with Warehouse(*Settings().warehouse).connect() as con:
        rows = con.execute(query).fetchall()
    stages = {
        stage: {"runs": runs, "device_s": round(device, 3), "wall_s": round(wall_s, 3)}
        for stage, runs, device, wall_s in rows
    }
    return {
        "run_wall_s": round(wall, 1),
        "stages": stages,
        "gate_share_of_render": round(stages["gate"]["device_s"] / stages["render"]["device_s"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", type=Path, default=EXAMPLES / "demo.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", help="git ref whose quality/metrics.py to time beside the current one"
    )
    parser.add_argument("--flow", action="store_true", help="also run the order as `factory run`")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-qc-"))
    os.environ["FACTORY_HOME"] = str(work / "home")
    from factory.orders import load_order

    order = load_order(args.order)
    produced = Produced(order, str(work / "store"))
    from media.video import decode_frames
    from quality.metrics import segment_metrics
    from quality.tables import segment_rows
    from quality.targets import segment_target
    from tasks.judging import judging

    targets = [segment_target(order, index) for index in range(len(order.segments))]
    encoded = produced.encoded()
    frames = sum(target.frames for target in targets)
    count = len(encoded)
    baseline = metrics_at(args.baseline) if args.baseline else None

    start = time.perf_counter()
    with judging(produced.production.thresholds) as judge:
        judge_s = time.perf_counter() - start
        suites = judge.suites

    rounds: dict[str, list[float]] = {
        name: []
        for name in (
            "gates_side_by_side",
            "gates_one_at_a_time",
            "metrics",
            "metrics_baseline",
            "decode",
            "gx_all",
            "gx_one",
        )
    }
    verdicts: list = []
    for number in range(args.rounds):
        # Each round judges another take: a gate's recipe (so its output) names its attempt.
        side = produced.gates_side_by_side(attempt=2 * number + 1)
        alone = produced.gates_one_at_a_time(attempt=2 * number + 2)
        rounds["gates_side_by_side"].append(sum(gate.run.device_seconds for gate in side))
        rounds["gates_one_at_a_time"].append(sum(gate.run.device_seconds for gate in alone))
        verdicts = [gate.verdict for gate in side]
        assert [v.model_copy(update={"attempt": 1}) for v in verdicts] == [
            gate.verdict.model_copy(update={"attempt": 1}) for gate in alone
        ], "sharing a validation changed a verdict"
        rounds["decode"].append(timed(lambda: [decode_frames(data) for data in encoded])[0])
        seconds, metrics = timed(lambda: [segment_metrics(data) for data in encoded])
        rounds["metrics"].append(seconds)
        if baseline is not None:
            rounds["metrics_baseline"].append(
                timed(lambda: [baseline.segment_metrics(data) for data in encoded])[0]
            )
        rows = segment_rows(metrics, targets)
        rounds["gx_all"].append(timed(lambda rows=rows: suites.judge("segment", rows))[0])
        rounds["gx_one"].append(
            median([timed(lambda row=row: suites.judge("segment", [row]))[0] for row in rows])
        )
    render = sum(produced.render_device_s)
    side, alone = median(rounds["gates_side_by_side"]), median(rounds["gates_one_at_a_time"])
    results = {
        "order": args.order.name,
        "segments": count,
        "segment_size": f"{targets[0].width}x{targets[0].height} @ {targets[0].fps:g} fps, "
        f"{targets[0].frames} frames",
        "verdicts_passed": sum(verdict.passed for verdict in verdicts),
        "render_device_s": round(render, 3),
        "render_device_s_per_segment_median": round(median(produced.render_device_s), 4),
        "gates_side_by_side_device_s": round(side, 4),
        "gates_one_at_a_time_device_s": round(alone, 4),
        "qc_share_of_render_side_by_side": round(side / render, 4),
        "qc_share_of_render_one_at_a_time": round(alone / render, 4),
        "qc_s_per_segment_side_by_side": round(side / count, 4),
        "qc_s_per_segment_one_at_a_time": round(alone / count, 4),
        "metric_extraction_fps": round(frames / median(rounds["metrics"]), 1),
        "metrics_s_per_segment": round(median(rounds["metrics"]) / count, 4),
        "metrics_vs_bare_rgb_decode": round(
            median(rounds["metrics"]) / median(rounds["decode"]), 3
        ),
        "gx_s_per_validation_of_all_segments": round(median(rounds["gx_all"]), 4),
        "gx_s_per_validation_of_one_segment": round(median(rounds["gx_one"]), 4),
        "judge_setup_s": round(judge_s, 3),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "goal": "qc_share_of_render <= 0.05",
    }
    if baseline is not None:
        results["baseline"] = args.baseline
        results["metric_extraction_fps_baseline"] = round(
            frames / median(rounds["metrics_baseline"]), 1
        )
    if args.flow:
        results["flow"] = flow_figures(args.order, work)
        results["load_average_after_flow"] = [round(value, 2) for value in os.getloadavg()]
    emit("qc", results)


if __name__ == "__main__":
    main()
