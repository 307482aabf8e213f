"""A warm `factory run` as the user waits for it: whole processes against the local server.

    .venv/bin/python -m bench.warm_run [--repeats 3] [--segments 120] [--work DIR]

In a fresh FACTORY_HOME (or --work's, whose demo is cached already), with the factory's
local Prefect server and its warm starter started first (their start is timed apart: it
happens once per machine, not per run):

- cached demo re-run: the 1-minute demo, produced once, then re-run as a whole
  `factory run` process, fully cached (goal ≤ 2 s on 2 cores), alternately through the
  warm starter (the `factory` launcher, as a user runs it) and in the process itself
  (FACTORY_WARM_START=off, as every run was before) for the ratio. Medians of --repeats;
  the warm starter's log says how many runs it served.
- first render: process start to the first render task running, for the tiny order with
  `--no-cache` (goal ≤ 3 s with the API up), through the launcher. The render pipeline's
  import and load are measured apart, in a process of their own (the first render pays
  them).
- orchestration per task: an order of --segments small segments with `--no-cache`; per
  task run, (task span − time in which some task ran) ÷ task runs (goal ≤ 15 ms). Tasks
  run one at a time on a CPU host, except a round's gates, which run side by side: the gaps
  in which no task runs are Prefect's.

The load average (`uptime`) is reported before and after: the machine is shared.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.common import emit, median

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
FACTORY = str(Path(sys.executable).parent / "factory")

PIPELINE_PROBE = """
import json, sys, time
start = time.perf_counter()
from media.pipelines import get_pipeline
imported = time.perf_counter()
from media.tinymodel import ensure_tiny_model
get_pipeline(ensure_tiny_model(__import__("pathlib").Path(sys.argv[1])))
loaded = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported}))
"""


def factory(env: dict[str, str], *args: str) -> tuple[float, datetime, dict]:
    """Run `factory ARGS --json`; its wall time, start time and printed delivery."""
    seconds, _, began, delivery = factory_cpu(env, *args)
    return seconds, began, delivery


def factory_cpu(env: dict[str, str], *args: str) -> tuple[float, float, datetime, dict]:
    """As `factory`, with the process's CPU seconds (user + system) after its wall time.

    CPU time is what a busy shared machine changes least: on a quiet one the wall time
    of a cached run is its CPU time plus the server's answers. Through the warm starter
    it is the launcher's alone (the child is the warm process's, not ours).
    """
    began = datetime.now(UTC)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [FACTORY, *args, "--json"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"factory {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu, began, json.loads(done.stdout)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def small_order(path: Path, segments: int) -> Path:
    """The tiny order's first segment ``segments`` times (distinct seeds), half a second each."""
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    template = order["segments"][0]
    order["id"] = f"small-{segments}"
    order["segments"] = [dict(template, seed=seed, duration_s=0.5) for seed in range(segments)]
    order["composite"]["captions"] = [""] * segments
    order["composite"]["logo"] = str(EXAMPLES / "logo.png")
    path.write_text(yaml.safe_dump(order))
    return path


def served_count(home: Path) -> int:
    """How many commands the warm starter has forked so far (its log's "serving" lines)."""
    try:
        text = (home / "server" / "warm" / "warm.log").read_text()
    except FileNotFoundError:
        return 0
    return text.count(" serving ")


def cached_runs(env: dict[str, str], home: Path, repeats: int) -> dict:
    store, out = str(home / "store"), str(home / "demo.mp4")
    demo = str(EXAMPLES / "demo.yaml")
    first_s, _, first = factory(env, "run", demo, "--store", store, "--out", out)
    in_process_env = {**env, "FACTORY_WARM_START": "off"}
    warm, warm_cpu, here, here_cpu = [], [], [], []
    served_before = served_count(home)
    for _ in range(repeats):
        for times, cpus, run_env in ((warm, warm_cpu, env), (here, here_cpu, in_process_env)):
            seconds, cpu, _, delivery = factory_cpu(
                run_env, "run", demo, "--store", store, "--out", out
            )
            assert all(run["cache_hit"] for run in delivery["runs"])
            assert delivery["deliverable"] == first["deliverable"]
            times.append(seconds)
            cpus.append(cpu)
    return {
        "demo_first_run_s": round(first_s, 2),
        "cached_run_s": [round(s, 2) for s in warm],
        "cached_run_median_s": round(median(warm), 2),
        "cached_run_launcher_cpu_median_s": round(median(warm_cpu), 3),
        "cached_runs_served_warm": served_count(home) - served_before,
        "cached_run_in_process_s": [round(s, 2) for s in here],
        "cached_run_in_process_median_s": round(median(here), 2),
        "cached_run_in_process_cpu_median_s": round(median(here_cpu), 2),
        "in_process_over_warm": round(median(here) / median(warm), 2),
        "goal_cached_run_s": 2.0,
    }


def first_render(env: dict[str, str], home: Path, repeats: int) -> dict:
    waits, render_walls = [], []
    for index in range(repeats):
        _, began, delivery = factory(
            env, "run", str(EXAMPLES / "tiny.yaml"), "--no-cache", "--no-ingest",
            "--store", str(home / "tiny-store"), "--out", str(home / f"tiny-{index}.mp4"),
        )  # fmt: skip
        renders = [run for run in delivery["runs"] if run["stage"] == "render"]
        first = min(renders, key=lambda run: run["started"])
        waits.append((datetime.fromisoformat(first["started"]) - began).total_seconds())
        render_walls.append(first["wall_seconds"])
    probe = subprocess.run(
        [sys.executable, "-c", PIPELINE_PROBE, str(home / "models")],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    pipeline = json.loads(probe.stdout)
    return {
        "to_first_render_s": [round(s, 2) for s in waits],
        "to_first_render_median_s": round(median(waits), 2),
        "first_render_wall_s": [round(s, 2) for s in render_walls],
        "pipeline_import_s": round(pipeline["import_s"], 2),
        "pipeline_load_s": round(pipeline["load_s"], 2),
        "goal_to_first_render_s": 3.0,
    }


def _covered_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds in which at least one task ran: a round's gates run side by side (and wait
    for each other), so a plain sum of walls would count their overlap as work."""
    covered, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                covered += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        covered += (current_end - current_start).total_seconds()
    return covered


def orchestration(env: dict[str, str], home: Path, segments: int) -> dict:
    order = small_order(home / "small.yaml", segments)
    seconds, _, delivery = factory(
        env, "run", str(order), "--no-cache", "--no-ingest",
        "--store", str(home / "small-store"), "--out", str(home / "small.mp4"),
    )  # fmt: skip
    runs = delivery["runs"]
    starts = [datetime.fromisoformat(run["started"]) for run in runs]
    ends = [datetime.fromisoformat(run["ended"]) for run in runs]
    span = (max(ends) - min(starts)).total_seconds()
    walls = sum(run["wall_seconds"] for run in runs)
    busy = _covered_seconds(sorted(zip(starts, ends, strict=True)))
    return {
        "segments": segments,
        "task_runs": len(runs),
        "process_s": round(seconds, 2),
        "task_span_s": round(span, 2),
        "sum_task_wall_s": round(walls, 2),
        "busy_s": round(busy, 2),
        "span_over_busy": round(span / busy, 3),
        "overhead_per_task_ms": round((span - busy) / len(runs) * 1000, 1),
        "goal_overhead_per_task_ms": 15.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (medians)")
    parser.add_argument("--segments", type=int, default=120, help="0 skips the overhead run")
    parser.add_argument(
        "--work", type=Path, help="reuse an earlier invocation's folder (its demo is cached)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-warm-"))
    home = work / "home"
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_LOCAL_SERVER": "true"}
    env["PREFECT_HOME"] = str(work / "prefect")
    for name in ("PREFECT_API_URL", "FACTORY_STORE", "FACTORY_REGISTRY", "FACTORY_WARM_START"):
        env.pop(name, None)
    load_before = load_average()
    start = time.perf_counter()
    subprocess.run([FACTORY, "server", "start"], env=env, check=True, capture_output=True)
    server_start_s = time.perf_counter() - start
    try:
        results = {
            "load_average_before": load_before,
            "server_start_s": round(server_start_s, 2),
            **cached_runs(env, home, args.repeats),
            **first_render(env, home, args.repeats),
        }
        if args.segments:
            results["orchestration"] = orchestration(env, home, args.segments)
    finally:
        subprocess.run([FACTORY, "server", "stop"], env=env, capture_output=True)
    emit("warm_run", {**results, "load_average_after": load_average()})


if __name__ == "__main__":
    main()
