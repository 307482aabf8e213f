"""The factory's long-lived local Prefect server: started once, found again by every run.

Without ``PREFECT_API_URL`` every `factory run` process would start Prefect's ephemeral
API and pay 8 to 25 s for it on 2 cores; a server that outlives the run pays that once,
keeps every run's history for the UI, and answers the next run in milliseconds. It
listens on 127.0.0.1 only; its state (PID, URL), log and SQLite database live under
``FACTORY_HOME/server``. Starting is serialised by a lock file, so two runs that both
find no server start one between them.
"""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from cli import warm
from cli.processes import alive
from factory.errors import FactoryError
from factory.settings import Settings

HOST = "127.0.0.1"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
DATABASE_FILE = "prefect.db"
STOP_TIMEOUT_S = 30.0


class ServerState(BaseModel):
    """What `start` recorded: the server process and where it answers."""

    pid: int
    port: int
    started: datetime
    log: Path
    database: Path

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"


class ServerStatus(BaseModel):
    """The server as `factory server status` reports it."""

    running: bool
    healthy: bool
    stale: bool = False
    ui_url: str | None = None
    api_url: str | None = None
    state: ServerState | None = None
    warm_starter: warm.WarmState | None = None


def read_state(server_dir: Path) -> ServerState | None:
    """The recorded server, or None when nothing (readable) is recorded."""
    try:
        return ServerState.model_validate_json((server_dir / STATE_FILE).read_text())
    except (OSError, ValidationError):
        return None


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200 and json.loads(response.read()) is True
    except (OSError, ValueError, urllib.error.URLError):
        return False


def status(settings: Settings) -> ServerStatus:
    """The recorded server's state; ``stale`` when its process is gone (start/stop tidy up)."""
    state = read_state(settings.server_dir)
    warm_state = warm.running(settings.server_dir)
    if state is None:
        return ServerStatus(running=False, healthy=False, warm_starter=warm_state)
    running = _is_server(state)
    return ServerStatus(
        running=running,
        healthy=running and healthy(state.api_url),
        stale=not running,
        ui_url=state.ui_url,
        api_url=state.api_url,
        state=state,
        warm_starter=warm_state,
    )


def ensure_running(
    settings: Settings, warm_wait_s: float = 0.0, *, warm_for_this_environment: bool = False
) -> tuple[ServerState, bool]:
    """The running server, started (and waited for) when there is none; True if started here.

    The warm starter beside it (cli.warm) is started too when it is not running or runs
    older code (or, with ``warm_for_this_environment``, serves another environment),
    unless FACTORY_WARM_START=off; ``warm_wait_s`` is how long to wait for it to listen
    (a `factory run` does not wait: the next run finds it).
    """
    server_dir = settings.server_dir
    with _locked(server_dir):
        state = read_state(server_dir)
        if state is not None and _is_server(state):
            _wait_healthy(state, None, settings.server_start_timeout_s)
            started = False
        else:
            (server_dir / STATE_FILE).unlink(missing_ok=True)
            state, started = _start(settings), True
        if warm.enabled():
            warm.ensure(server_dir, warm_wait_s, for_this_environment=warm_for_this_environment)
        return state, started


def stop(settings: Settings, timeout_s: float = STOP_TIMEOUT_S) -> ServerState | None:
    """SIGTERM the recorded server and wait for it to exit (SIGKILL after ``timeout_s``).

    Returns the state of the server stopped, or None when none was running (a stale
    state file is removed either way).
    """
    server_dir = settings.server_dir
    with _locked(server_dir):
        state = read_state(server_dir)
        stopped = None
        if state is not None and _is_server(state):
            os.kill(state.pid, signal.SIGTERM)
            if not _wait_exit(state.pid, timeout_s):
                os.kill(state.pid, signal.SIGKILL)
                _wait_exit(state.pid, 5.0)
            stopped = state
        (server_dir / STATE_FILE).unlink(missing_ok=True)
        return stopped


@contextmanager
def api_settings(settings: Settings) -> Iterator[str | None]:
    """Point Prefect's client at the local server for reading, when it is the API to use.

    A configured ``PREFECT_API_URL`` (environment or profile) wins; without one, a
    running local server is used; else Prefect's ephemeral API, as before. Yields the
    local server's API URL, or None when it is not used. Starts nothing.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    current = status(settings) if not PREFECT_API_URL.value() else None
    if current is None or not current.healthy:
        yield None
        return
    with temporary_settings({PREFECT_API_URL: current.api_url}):
        yield current.api_url


def server_for_run(settings: Settings, ephemeral: bool) -> tuple[ServerState | None, bool]:
    """The local server a run in this process should use (started if need be), and whether
    this call started it; None: use the configured ``PREFECT_API_URL`` or the ephemeral API.
    """
    from prefect.settings import PREFECT_API_URL

    if ephemeral or not settings.local_server or PREFECT_API_URL.value():
        return None, False
    return ensure_running(settings)


def _start(settings: Settings) -> ServerState:
    server_dir = settings.server_dir
    port = _free_port()
    log = server_dir / LOG_FILE
    state = ServerState(
        pid=0, port=port, started=datetime.now(UTC), log=log, database=server_dir / DATABASE_FILE
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PREFECT_API_URL", "PREFECT_API_KEY")
    }
    env.update(
        PREFECT_HOME=str(server_dir / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{state.database}",
        # Without it the UI calls the API on port 4200 whatever port the server has.
        PREFECT_SERVER_UI_API_URL=state.api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Request lines at INFO would grow the log by a line per task-run state.
        PREFECT_SERVER_LOGGING_LEVEL=env.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
    )
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST]
    with log.open("ab") as output:
        output.write(f"--- {state.started:%Y-%m-%d %H:%M:%S} UTC: starting on {port}\n".encode())
        output.flush()
        # A session of its own: the server outlives this command and ignores its Ctrl-C.
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=server_dir,
            start_new_session=True,
        )
    state = state.model_copy(update={"pid": process.pid})
    temp = server_dir / f".{STATE_FILE}.{os.getpid()}"
    temp.write_text(state.model_dump_json(indent=2))
    temp.replace(server_dir / STATE_FILE)
    try:
        _wait_healthy(state, process, settings.server_start_timeout_s)
    except FactoryError:
        process.kill()
        process.wait()
        (server_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return state


def _wait_healthy(state: ServerState, process: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not healthy(state.api_url, timeout_s=1.0):
        exited = process.poll() is not None if process else not _is_server(state)
        if exited or time.monotonic() > deadline:
            what = "exited" if exited else f"did not answer within {timeout_s:.0f} s"
            raise FactoryError(
                f"the local Prefect server (pid {state.pid}, {state.api_url}) {what}; "
                f"its log: {state.log}\n{_tail(state.log)}\nRetry, raise "
                "FACTORY_SERVER_START_TIMEOUT_S, or run with --ephemeral"
            )
        time.sleep(0.2)


def _is_server(state: ServerState) -> bool:
    """Whether the recorded PID is still this server, not gone or reused by another process."""
    if not alive(state.pid):
        return False
    try:
        command = Path(f"/proc/{state.pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc (not Linux): a live PID whose port answers is taken as the server.
        return healthy(state.api_url)
    return b"prefect" in command and b"server" in command and str(state.port).encode() in command


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def _locked(server_dir: Path) -> Iterator[None]:
    server_dir.mkdir(parents=True, exist_ok=True)
    with (server_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
