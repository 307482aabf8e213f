"""The warm starter: the real `factory` console script served by a forked child, as users run it.

One FACTORY_HOME with the local server and the warm starter started by `factory server
start`, every command run both ways (FACTORY_WARM_START=off runs it in the launcher's own
process, as before), stopped by PID at the end. Whether the warm starter served a command
is read from its log, which names every command it forked or refused.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from storage.cache import process_alive

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
FACTORY = str(Path(sys.executable).parent / "factory")

pytestmark = pytest.mark.slow


def _factory(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FACTORY, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return not process_alive(pid)


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Warm:
    """The served home: its environment, the warm starter's log, both ways of running."""

    def __init__(self, home: Path, env: dict[str, str], state: dict) -> None:
        self.home, self.env, self.state = home, env, state
        self.log = home / "server" / "warm" / "warm.log"

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def both(self, *args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """``args`` through the warm starter (which must serve it), then in-process."""
        before = len(self.log_lines())
        warm = _factory(self.env, *args)
        served = [line for line in self.log_lines()[before:] if " serving " in line]
        assert len(served) == 1 and repr(list(args))[1:-1] in served[0], self.log_lines()[before:]
        here = _factory({**self.env, "FACTORY_WARM_START": "off"}, *args)
        assert len(self.log_lines()) == before + 1
        return warm, here


@pytest.fixture(scope="module")
def warm(factory_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warm]:
    home = tmp_path_factory.mktemp("warm") / "home"
    home.mkdir()
    (home / "models").symlink_to(factory_home / "models")
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_LOCAL_SERVER": "true"}
    env["PREFECT_HOME"] = str(home / "prefect-client")
    for name in ("PREFECT_API_URL", "FACTORY_STORE", "FACTORY_REGISTRY", "FACTORY_WARM_START"):
        env.pop(name, None)
    started = _factory(env, "server", "start", "--json")
    assert started.returncode == 0, started.stderr[-2000:]
    state = json.loads(started.stdout)
    assert state["warm_starter"] is not None, (home / "server" / "warm" / "warm.log").read_text()
    try:
        yield Warm(home, env, state)
    finally:
        _factory(env, "server", "stop", timeout=60)
        for pid in (state["state"]["pid"], state["warm_starter"]["pid"]):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_version_and_orders_good_and_bad_come_out_the_same(warm: Warm, tmp_path: Path):
    served, here = warm.both("--version")
    assert (served.returncode, served.stdout, served.stderr) == (0, here.stdout, here.stderr)
    assert served.stdout.startswith("factory ")

    bad = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    bad["segments"][0]["width"] = 641
    bad["composite"]["logo"] = str(EXAMPLES / "logo.png")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    served, here = warm.both("run", str(tmp_path / "bad.yaml"), "--store", str(tmp_path / "s"))
    assert served.returncode == here.returncode == 2
    assert (served.stdout, served.stderr) == (here.stdout, here.stderr)
    assert "641" in served.stderr

    store, out = str(warm.home / "store"), str(tmp_path / "tiny.mp4")
    order = str(EXAMPLES / "tiny.yaml")
    first = _factory(warm.env, "run", order, "--store", store, "--out", out, "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    # Fully cached now: the delivery table is the same, line for line, both ways.
    served, here = warm.both("run", order, "--store", store, "--out", out)
    assert served.returncode == here.returncode == 0, served.stderr[-3000:]
    assert served.stdout == here.stdout
    assert "2 segments, 2.0 s of video" in served.stderr
    digest = json.loads(first.stdout)["deliverable"]["digest"]
    assert f"sha256:{digest[:40]}" in served.stdout.replace("\n", "").replace(" ", "")


def test_another_environment_is_refused_and_runs_here(warm: Warm, tmp_path: Path):
    before = len(warm.log_lines())
    done = _factory({**warm.env, "FACTORY_WORKER_NAME": "elsewhere"}, "--version")
    assert done.returncode == 0 and done.stdout.startswith("factory ")
    (line,) = warm.log_lines()[before:]
    assert "refused" in line and "environment differs: FACTORY_WORKER_NAME" in line
    shown = _factory({**warm.env, "FACTORY_WORKER_NAME": "elsewhere"}, "server", "status")
    assert "started from another environment" in " ".join(shown.stdout.split())
    shown = _factory(warm.env, "server", "status")
    assert "serves `factory run` from this environment" in " ".join(shown.stdout.split())

    # Prefect would read this at import: a folder with one is left to a fresh process.
    (tmp_path / "prefect.toml").write_text("")
    before = len(warm.log_lines())
    done = subprocess.run([FACTORY, "--version"], env=warm.env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("factory ")
    assert "prefect.toml in the working directory" in warm.log_lines()[before]

    before = len(warm.log_lines())
    debug = _factory({**warm.env, "FACTORY_WARM_START": "debug"}, "runs", "--help")
    assert debug.returncode == 0 and "runs" in debug.stdout
    assert "the warm starter refused: `runs` is not served warm" in debug.stderr
    assert "refused" in warm.log_lines()[before]


def test_ctrl_c_stops_the_served_child(warm: Warm, tmp_path: Path):
    before = len(warm.log_lines())
    launcher = subprocess.Popen(
        [FACTORY, "run", str(EXAMPLES / "tiny.yaml"), "--no-cache", "--no-ingest",
         "--store", str(tmp_path / "store"), "--out", str(tmp_path / "slow.mp4")],
        env=warm.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (served := [line for line in warm.log_lines()[before:] if " serving " in line]):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.1)
    child = int(served[0].rsplit(" as pid ", 1)[1])
    time.sleep(2.0)  # into the flow: the order is checked and the run created by now
    assert launcher.poll() is None and not _gone(child)
    launcher.send_signal(signal.SIGINT)
    _, stderr = launcher.communicate(timeout=120)
    # As in-process: Prefect ends the interrupted flow run and the command exits 130.
    assert launcher.returncode == 130, stderr[-3000:]
    assert _wait_gone(child)
    assert not (tmp_path / "slow.mp4").exists()


def test_a_killed_warm_starter_falls_back_to_running_here(warm: Warm):
    pid = warm.state["warm_starter"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    before = len(warm.log_lines())
    done = _factory(warm.env, "--version")
    assert done.returncode == 0 and done.stdout.startswith("factory ")
    assert len(warm.log_lines()) == before
    status = json.loads(_factory(warm.env, "server", "status", "--json").stdout)
    assert status["warm_starter"] is None
