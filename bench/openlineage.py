"""What OpenLineage costs a run: the client's import, the unconfigured check, one event.

    .venv/bin/python -m bench.openlineage [--rounds 9] [--events 200]

* ``import_s``: importing ``openlineage.client`` in a fresh interpreter, alone and after
  what a factory process has loaded already (prefect, pydantic, yaml, requests); the
  reason the unconfigured path never imports it. Medians over --rounds processes.
* ``unconfigured_check_us``: ``openlineage_settings()`` when nothing configures it, the
  whole cost of OpenLineage to a factory that does not use it (per entry point).
* ``event_ms``: one stage COMPLETE event (cost, model and parent facets) through the
  client's file transport, appending to a local file; median over --events.
  ``demo_run_ms``: that times the 1-minute demo's 76 events (37 stage runs and the flow,
  START and end each).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import emit, median, timed

IMPORT = "import time; t = time.perf_counter(); import openlineage.client; "
PRINT = "print(time.perf_counter() - t)"
PRELOADED = "import prefect, pydantic, yaml, requests; "
DEMO_EVENTS = 2 * (37 + 1)


def import_seconds(preload: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        result = subprocess.run(
            [sys.executable, "-c", preload + IMPORT + PRINT],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(result.stdout.strip()))
    return median(times)


def unconfigured_check_us(rounds: int) -> float:
    from storage.openlineage_config import openlineage_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
    with tempfile.TemporaryDirectory() as empty:
        times = [
            timed(lambda: openlineage_settings(env, Path(empty), Path(empty)))[0]
            for _ in range(rounds)
        ]
    return median(times) * 1e6


def event_ms(events: int) -> float:
    from factory.assets import AssetRef, RunRecord
    from factory.floor import load_price_card
    from factory.registry import ModelInfo, ProvenanceSource, RoyaltyShare
    from storage.openlineage import open_emitter
    from storage.openlineage_config import LineageRun, openlineage_settings

    with tempfile.TemporaryDirectory() as folder:
        os.environ["OPENLINEAGE__TRANSPORT__TYPE"] = "file"
        os.environ["OPENLINEAGE__TRANSPORT__LOG_FILE_PATH"] = str(Path(folder) / "ol.jsonl")
        os.environ["OPENLINEAGE__TRANSPORT__APPEND"] = "true"
        settings = openlineage_settings()
        assert settings is not None
        emitter = open_emitter(settings, folder, load_price_card())
        assert emitter is not None
        digest = "ab" * 32
        asset = AssetRef(
            digest=digest,
            uri="file:///x",
            key=f"assets/sha256/ab/{digest}",
            media_type="video/mp4",
            size=1,
        )
        now = datetime.now(UTC)
        record = RunRecord(
            stage="composite", device_class="cpu", device_seconds=1.0, wall_seconds=1.1,
            started=now, ended=now, output_digest=digest,
        )  # fmt: skip
        model = ModelInfo(
            name="tiny",
            weights_fingerprint=digest,
            training_provenance=[ProvenanceSource(source="none", license="Apache-2.0")],
            royalty_routing=[RoyaltyShare(holder="maintainers", share=1.0)],
        )
        flow = LineageRun(job="produce", run_id="6673ae8e-2f6d-4c0d-ad84-589a580bb850")
        run = LineageRun(job="produce.composite", run_id=flow.run_id, parent=flow)
        times = []
        for _ in range(events):
            start = time.perf_counter()
            emitter.stage_completed(run, [asset, asset], asset, record, [model])
            times.append(time.perf_counter() - start)
        lines = (Path(folder) / "ol.jsonl").read_text().count("\n")
        assert lines == events, f"{lines} events written of {events}"
    return median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    event = event_ms(args.events)
    emit(
        "openlineage",
        {
            "import_s": {
                "alone": round(import_seconds("", args.rounds), 3),
                "after_prefect": round(import_seconds(PRELOADED, args.rounds), 3),
            },
            "unconfigured_check_us": round(unconfigured_check_us(1000), 1),
            "event_ms": round(event, 3),
            "demo_run_ms": round(event * DEMO_EVENTS, 1),
            "load_average": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()
