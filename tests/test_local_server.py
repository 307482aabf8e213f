"""The factory's local Prefect server: its life cycle, runs reusing it, cached runs staying light.

Everything runs as the user would: `factory` processes with a FACTORY_HOME of their own,
the server found through its state file, stopped by PID at the end.
"""

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.cache import process_alive

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
FACTORY = str(Path(sys.executable).parent / "factory")


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "FACTORY_HOME": str(home), "FACTORY_LOCAL_SERVER": "true"}
    # Nothing may fall back to Prefect's ephemeral API or a profile's server unnoticed.
    env["PREFECT_HOME"] = str(home / "prefect-client")
    for name in ("PREFECT_API_URL", "FACTORY_STORE", "FACTORY_REGISTRY"):
        env.pop(name, None)
    return env


def _factory(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FACTORY, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _exited(pid: int) -> bool:
    """Gone, or a zombie that init has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return not process_alive(pid)


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_server_start_status_stop_and_a_stale_pid_file(tmp_path):
    env = _env(tmp_path / "home")
    server_dir = tmp_path / "home" / "server"
    server_dir.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale_pid = int(gone.stdout)
    stale_state = {"pid": stale_pid, "port": 9, "started": "2026-01-01T00:00:00Z",
                   "log": str(server_dir / "server.log"),
                   "database": str(server_dir / "prefect.db")}  # fmt: skip
    (server_dir / "server.json").write_text(json.dumps(stale_state))
    stale = _factory(env, "server", "status", "--json")
    assert stale.returncode == 1
    assert json.loads(stale.stdout) | {"state": None} == {
        "running": False, "healthy": False, "stale": True, "ui_url": "http://127.0.0.1:9",
        "api_url": "http://127.0.0.1:9/api", "state": None, "warm_starter": None,
    }  # fmt: skip

    started = _factory(env, "server", "start", "--json")
    assert started.returncode == 0, started.stderr[-2000:]
    state = json.loads(started.stdout)
    pid, api = state["state"]["pid"], state["api_url"]
    assert state["healthy"] and pid != stale_pid and api.startswith("http://127.0.0.1:")
    assert _get(f"{api}/health") is True
    assert (server_dir / "prefect.db").is_file() and (server_dir / "server.log").is_file()

    again = _factory(env, "server", "start")
    assert again.returncode == 0 and f"already running: factory server pid {pid}" in again.stderr
    shown = _factory(env, "server", "status")
    assert shown.returncode == 0
    assert "running" in shown.stdout and api in shown.stdout and str(pid) in shown.stdout

    warm_pid = state["warm_starter"]["pid"]
    assert "warm starter" in shown.stdout and str(warm_pid) in shown.stdout
    stopped = _factory(env, "server", "stop", timeout=60)
    assert stopped.returncode == 0 and f"stopped factory server pid {pid}" in stopped.stderr
    assert f"stopped the warm starter pid {warm_pid}" in stopped.stderr
    assert _exited(pid) and _exited(warm_pid)
    assert not (server_dir / "server.json").exists()
    assert _factory(env, "server", "status").returncode == 1
    assert "no factory server running" in _factory(env, "server", "stop").stderr


@pytest.fixture(scope="module")
def served(factory_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A home with the session's tiny model, its local server started, stopped at the end."""
    home = tmp_path_factory.mktemp("served") / "home"
    home.mkdir()
    (home / "models").symlink_to(factory_home / "models")
    env = _env(home)
    started = _factory(env, "server", "start", "--json")
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield {"env": env, "home": home, **json.loads(started.stdout)}
    finally:
        _factory(env, "server", "stop", timeout=60)


@pytest.fixture(scope="module")
def produced(served: dict) -> dict:
    """The tiny order produced once by `factory run` against the running server."""
    home = served["home"]
    done = _factory(served["env"], "run", str(EXAMPLES / "tiny.yaml"), "--store",
                    str(home / "store"), "--out", str(home / "tiny.mp4"), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"delivery": json.loads(done.stdout), "stderr": done.stderr}


@pytest.mark.slow
def test_factory_run_reuses_the_running_server(served, produced):
    assert "started the factory's Prefect server" not in produced["stderr"]
    run = _get(f"{served['api_url']}/flow_runs/{produced['delivery']['flow_run_id']}")
    assert run["state_type"] == "COMPLETED"
    assert run["parameters"]["order"]["id"] == "tiny"
    status = json.loads(_factory(served["env"], "server", "status", "--json").stdout)
    assert status["state"]["pid"] == served["state"]["pid"]


DRIVER = """
import sys

sys.argv = ["factory", "run", sys.argv[1], "--store", sys.argv[2], "--out", sys.argv[3], "--json"]
from cli.main import main

try:
    main()
except SystemExit as done:
    assert done.code in (0, None), done.code
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "av") if m in sys.modules)
assert not heavy, f"a fully cached run imported {heavy}"
"""


@pytest.mark.slow
def test_a_fully_cached_run_never_imports_torch(served, produced, tmp_path):
    home = served["home"]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(EXAMPLES / "tiny.yaml"), str(home / "store"),
         str(tmp_path / "again.mp4")],
        env=served["env"], capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    delivery = json.loads(done.stdout)
    assert all(run["cache_hit"] for run in delivery["runs"])
    assert delivery["deliverable"] == produced["delivery"]["deliverable"]
