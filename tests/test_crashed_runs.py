"""A run killed with SIGKILL is marked Crashed when the factory next starts on that API."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


def _runs(database: Path) -> list[tuple[str, str, str | None]]:
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=10) as con:
        try:
            return con.execute(
                "select id, state_type, infrastructure_pid from flow_run order by created"
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is still being created


def test_a_killed_run_is_marked_crashed_by_the_next_start(factory_home, tmp_path):
    env = {**os.environ, "FACTORY_HOME": str(factory_home), "PREFECT_HOME": str(tmp_path / "pf")}
    env.pop("PREFECT_API_URL", None)
    database = tmp_path / "pf" / "prefect.db"
    factory = str(Path(sys.executable).parent / "factory")
    command = [factory, "run", str(EXAMPLES / "tiny.yaml"), "--store", str(tmp_path / "store"),
               "--no-cache", "--out", str(tmp_path / "t.mp4")]  # fmt: skip
    # Its own process group, so the kill takes its Prefect server with it, as a crash of
    # the machine would (a lone SIGKILL leaves that server running, orphaned).
    victim = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    running = []
    while time.monotonic() < deadline and victim.poll() is None:
        running = [run for run in _runs(database) if run[1] == "RUNNING" and run[2]]
        if running:
            break
        time.sleep(0.2)
    assert running, "the run never reached RUNNING with its process recorded"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    (killed_id, _, process) = running[0]
    assert process.endswith(f":{victim.pid}")
    assert dict((run[0], run[1]) for run in _runs(database))[killed_id] == "RUNNING"

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        f"marked flow run {killed_id.replace('-', '')}" in done.stderr.replace("-", "")
        or f"marked flow run {killed_id}" in done.stderr
    )
    states = {run[0]: run[1] for run in _runs(database)}
    assert states[killed_id] == "CRASHED"
    assert list(states.values()).count("COMPLETED") == 1
