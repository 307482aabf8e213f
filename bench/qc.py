"""The cost of QC: metric extraction speed, and QC time per segment against its render time.

    .venv/bin/python -m bench.qc [--order examples/demo.yaml] [--rounds 3]

Renders, composites and encodes every segment of the order with the stage runner (the
tiny model, no Prefect, no cache), keeping each render's device-seconds. Then it measures:

* metric extraction (decode + every metric) in frames per second, on the encoded segments,
  and against a bare decode to RGB (``media.video.decode_frames``) in the same rounds;
* one GX validation of the segment suite, of all segments at once (as the gate should
  judge them) and of one segment at a time (the worst case);
* QC per segment = its metric extraction + its share of a validation, both ways;
* the one-time cost of a Judge (importing GX, building the context and suites).

Goal: QC per segment ≤ 5% of the segment's render time.
"""

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import emit, median, timed

EXAMPLES = Path(__file__).parent.parent / "examples"


def produce_segments(order, store: str):
    """(encoded bytes, render device-seconds, render wall seconds) per segment."""
    from factory.settings import Settings
    from media.devices import device_class
    from storage.assets import get_asset
    from tasks.chain import SEGMENT_CHAIN, upstream_for
    from tasks.gate import GATE
    from tasks.prepare import check_order, prepare
    from tasks.provenance import RunContext
    from tasks.resources import open_resources
    from tasks.runner import run_stage

    context = RunContext(order_id=order.id, flow_run_id=f"bench-qc-{uuid.uuid4().hex}")
    settings = Settings()
    resources = open_resources(settings, device_class(), store)
    models = check_order(order, resources.registry, settings.models_dir)
    production = prepare(order, resources, models, context)
    produced = []
    # Up to the encode: what the gate judges is what this benchmark times.
    before_gate = [spec for spec in SEGMENT_CHAIN if spec is not GATE]
    for index in range(len(order.segments)):
        outputs: list = []
        for spec in before_gate:
            job = spec.plan(order, production, index, upstream_for(spec, outputs))
            outputs.append(run_stage(resources, job, context, "off"))
        render, encoded = outputs[0].run, outputs[-1]
        data = get_asset(resources.store, encoded.asset)
        produced.append((data, render.device_seconds, render.wall_seconds))
    return produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", type=Path, default=EXAMPLES / "demo.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-qc-"))
    os.environ["FACTORY_HOME"] = str(work / "home")
    from factory.orders import load_order

    order = load_order(args.order)
    produced = produce_segments(order, str(work / "store"))
    from media.video import decode_frames
    from quality.metrics import segment_metrics
    from quality.tables import segment_rows
    from quality.targets import segment_target

    targets = [segment_target(order, index) for index in range(len(order.segments))]
    items = [(data, target) for (data, _, _), target in zip(produced, targets, strict=True)]
    frames = sum(target.frames for target in targets)

    start = time.perf_counter()
    from quality.judge import Judge

    judge = Judge()
    judge_s = time.perf_counter() - start

    metric_rounds, decode_rounds, batch_rounds, single_rounds, end_to_end_rounds = (
        [],
        [],
        [],
        [],
        [],
    )
    for _ in range(args.rounds):
        decode_rounds.append(timed(lambda: [decode_frames(data) for data, _ in items])[0])
        seconds, metrics = timed(lambda: [segment_metrics(data) for data, _ in items])
        metric_rounds.append(seconds)
        rows = segment_rows(metrics, targets)
        batch_rounds.append(timed(lambda rows=rows: judge.suites.judge("segment", rows))[0])
        single_rounds.append(
            median([timed(lambda row=row: judge.suites.judge("segment", [row]))[0] for row in rows])
        )
        seconds, verdicts = timed(lambda: judge.judge_segments(items))
        end_to_end_rounds.append(seconds)
    count = len(items)
    render_device = [device for _, device, _ in produced]
    render_per_segment = median(render_device)
    metrics_per_segment = median(metric_rounds) / count
    batched = metrics_per_segment + median(batch_rounds) / count
    one_by_one = metrics_per_segment + median(single_rounds)
    emit(
        "qc",
        {
            "order": args.order.name,
            "segments": count,
            "segment_size": f"{targets[0].width}x{targets[0].height} @ {targets[0].fps:g} fps, "
            f"{targets[0].frames} frames",
            "verdicts_passed": sum(verdict.passed for verdict in verdicts),
            "render_device_s_per_segment_median": round(render_per_segment, 4),
            "judge_setup_s": round(judge_s, 3),
            "metric_extraction_fps": round(frames / median(metric_rounds), 1),
            "metrics_s_per_segment": round(metrics_per_segment, 4),
            "metrics_vs_bare_rgb_decode": round(median(metric_rounds) / median(decode_rounds), 3),
            "gx_s_per_validation_of_all_segments": round(median(batch_rounds), 4),
            "gx_s_per_validation_of_one_segment": round(median(single_rounds), 4),
            "judge_segments_s_all_segments": round(median(end_to_end_rounds), 4),
            "qc_s_per_segment_batched": round(batched, 4),
            "qc_s_per_segment_one_by_one": round(one_by_one, 4),
            "qc_share_of_render_batched": round(batched / render_per_segment, 4),
            "qc_share_of_render_one_by_one": round(one_by_one / render_per_segment, 4),
            "goal": "qc_share_of_render <= 0.05",
        },
    )


if __name__ == "__main__":
    main()
