"""Deploying the factory as an operator does, for tests: the documented commands as subprocesses.

Every process started here is stopped by its own PID (`stop`); the Prefect API is the
session's test server (conftest's ``prefect_server``), reached by its URL like any client.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
POOLS = ("factory-cpu", "factory-gpu")


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "needs the session's Prefect server (the prefect_server fixture)"
    return url


def call_api(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One REST call to the test server, retried as Prefect's own client does on 503 and 429
    (a busy SQLite answers 503 `database is locked` on a loaded machine)."""
    for delay in (0.5, 1, 2, 4, 8):
        response = httpx.request(method, f"{api_url()}{path}", timeout=30, **kwargs)
        if response.status_code not in (429, 503):
            return response
        time.sleep(delay)
    return response


def base_env(factory_home: Path, **extra: str) -> dict[str, str]:
    """The environment of an operator's shell pointed at the test server and FACTORY_HOME."""
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "FACTORY_HOME": str(factory_home),
        "FACTORY_TASK_WORKERS": "1",
        **extra,
    }
    for name in ("FACTORY_STORE", "FACTORY_REGISTRY", "FACTORY_TRUST"):
        if name not in extra:
            env.pop(name, None)
    return env


def deploy_commands(*names: str) -> list[list[str]]:
    """The README's sequence: create each pool prefect.yaml names, deploy (every deployment, or
    the ``names`` a host runs), add the code-defined schedules."""
    prefect = str(BIN / "prefect")
    which = [arg for name in names for arg in ("--name", name)] or ["--all"]
    return [
        *(
            [prefect, "work-pool", "create", pool, "--type", "process", "--overwrite"]
            for pool in POOLS
        ),
        [prefect, "--no-prompt", "deploy", *which, "--prefect-file", "deployments/prefect.yaml"],
        [sys.executable, "deployments/schedules.py"],
    ]


def run_commands(commands: list[list[str]], env: dict[str, str]) -> list[str]:
    """Run each command from the repository root; fail with its output if one fails."""
    outputs = []
    for command in commands:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
        outputs.append(output)
    return outputs


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a long-running process from the repository root, its output in ``log``."""
    with open(log, "ab") as sink:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, timeout_s: float = 20.0) -> float:
    """SIGTERM ``process`` (by its PID) and wait; the seconds it took (killed after timeout_s)."""
    started = time.monotonic()
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return time.monotonic() - started


def wait_for(
    check: Callable[[], Any], what: str, timeout_s: float = 180.0, log: Path | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")
