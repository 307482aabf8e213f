"""The warm starter's rules and life cycle: which requests it may serve, its state, start/stop.

The warm starter (cli/warm_process.py) is a long-lived process next to the factory's local
Prefect server that has paid the imports a `factory run` needs (Prefect, the flows, the
task modules: about 3 CPU seconds on 2 cores) and forks a child per `factory` command that
the launcher (cli/launcher.py) hands it. Forking is only as good as the state it copies, so
a request is served only when a fresh process would have imported the same thing: the
same environment, the same code on disk, a command whose import-time settings are the
ones the warm process used. Everything else runs in the launcher's own process, as before.

Standard library and pydantic only: cli.local_server and cli.main import this module.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from cli.processes import alive, command_line

WARM_DIR = "warm"
SOCKET_FILE = "warm.sock"
STATE_FILE = "warm.json"
LOG_FILE = "warm.log"
STOP_TIMEOUT_S = 10.0

# The packages whose code a forked child runs without re-reading it (pyproject's wheel).
PACKAGES = ("factory", "media", "storage", "quality", "tasks", "flows", "cli")
ROOT = Path(__file__).resolve().parent.parent

# Variables that only describe the shell around the command, read by nothing the warm
# process imported; every other variable must match. FACTORY_WARM_START is the launcher's
# own switch (pydantic's Settings ignores unknown FACTORY_ names).
IGNORED_ENV = frozenset({"PWD", "OLDPWD", "_", "SHLVL", "FACTORY_WARM_START"})

# Root options whose output depends on the parent process (shellingham walks the process
# tree to find the user's shell), and `run`'s verbose switch, which sets Prefect's logging
# level before Prefect is imported: the warm process imported it quiet.
UNSERVED_OPTIONS = ("--install-completion", "--show-completion", "-v", "--verbose")

# FACTORY_WARM_START values that turn the warm starter off (the launcher reads the same).
OFF = ("off", "0", "false", "no")

_added_by_quiet: set[str] = set()


def quiet_defaults(verbose: bool) -> dict[str, str]:
    """The variables `factory run` sets (unless the user did) before importing Prefect."""
    defaults = {
        "PREFECT_LOGGING_LEVEL": "INFO" if verbose else "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A fresh Prefect database on a loaded 2-core machine can take longer than the
        # 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    if not verbose:
        # Our own bars replace the per-component loading bars of diffusers and
        # transformers (the pipeline loader makes diffusers follow this switch; importing
        # either library here would cost a cached run seconds).
        defaults["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    return defaults


def apply_quiet_defaults(verbose: bool) -> None:
    """Set :func:`quiet_defaults` where unset, remembering which this process added."""
    for key, value in quiet_defaults(verbose).items():
        if key not in os.environ:
            os.environ[key] = value
            _added_by_quiet.add(key)


def user_environment() -> dict[str, str]:
    """This process's environment as the user gave it: without what the CLI set by default.

    The warm process compares each request against the environment it was started with,
    so it must start with the user's, not with a `factory run`'s after its defaults.
    """
    return {key: value for key, value in os.environ.items() if key not in _added_by_quiet}


def environment_difference(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """The names of the variables that differ between two environments (sorted)."""
    names = (set(ours) | set(theirs)) - IGNORED_ENV
    return sorted(name for name in names if ours.get(name) != theirs.get(name))


def unserved_reason(argv: list[str]) -> str | None:
    """Why the warm process must not run ``argv`` (the launcher's sys.argv), or None.

    Served: `factory run …` and the root options (--version, --help). Other commands run
    in the launcher's process; they import Prefect, if at all, with the user's logging
    settings rather than `run`'s quiet ones.
    """
    args = argv[1:]
    for option in UNSERVED_OPTIONS:
        if any(arg == option or arg.startswith(f"{option}=") for arg in args):
            return f"{option} is not served warm"
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command not in (None, "run"):
        return f"`{command}` is not served warm"
    return None


def environment_digest(environment: Mapping[str, str]) -> str:
    """A digest of the variables that must match (all but IGNORED_ENV)."""
    kept = sorted((k, v) for k, v in environment.items() if k not in IGNORED_ENV)
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()


def working_directory_reason(cwd: Path) -> str | None:
    """Why a command in ``cwd`` must not be served, or None.

    Prefect's settings read ``.env``, ``prefect.toml`` and ``pyproject.toml``'s
    ``[tool.prefect]`` from the working directory when it is imported: the warm process
    imported it in a folder with none of them (its own), so a directory that has one is
    left to a fresh process.
    """
    for name in (".env", "prefect.toml"):
        if (cwd / name).exists():
            return f"{name} in the working directory (Prefect reads it at import)"
    try:
        pyproject = (cwd / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return None
    if "[tool.prefect" in pyproject:
        return "[tool.prefect] in pyproject.toml (Prefect reads it at import)"
    return None


def code_fingerprint() -> str:
    """A digest of the factory's files (path, size, mtime) and of site-packages' listing.

    Editing any module, SQL model or TOML of the factory, or installing or upgrading a
    package (which changes site-packages' entries and so its mtime), changes it.
    """
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            stat = path.stat()
            digest.update(
                f"{path.relative_to(ROOT)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    site = Path(sysconfig.get_paths()["purelib"])
    digest.update(f"{site}\0{site.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


class WarmState(BaseModel):
    """What the warm process records once it listens: which process, where, on which code."""

    pid: int
    socket: Path
    started: datetime
    fingerprint: str
    # A default, so that a state file from before the field still names its process
    # (and `stop` can stop it); `serves` then says no, and `server start` restarts it.
    environment: str = Field(
        default="", description="environment_digest of the environment it serves"
    )
    log: Path

    def serves(self, environment: Mapping[str, str]) -> bool:
        """Whether a command with ``environment`` would be served (code aside)."""
        return self.environment == environment_digest(environment)


def warm_dir(server_dir: Path) -> Path:
    return server_dir / WARM_DIR


def read_state(server_dir: Path) -> WarmState | None:
    try:
        return WarmState.model_validate_json((warm_dir(server_dir) / STATE_FILE).read_text())
    except (OSError, ValidationError):
        return None


def running(server_dir: Path) -> WarmState | None:
    """The recorded warm process when its PID is still a warm process, else None."""
    state = read_state(server_dir)
    return state if state is not None and _is_warm(state.pid) else None


def start(server_dir: Path, wait_s: float = 0.0) -> int | None:
    """Start the warm process unless one runs; wait up to ``wait_s`` for it to listen.

    Returns the PID of the process started, or None when one was running already. The
    caller holds the local server's start lock, so two commands never start two.
    """
    if running(server_dir) is not None:
        return None
    folder = warm_dir(server_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Only this user may connect (the process also checks each peer's uid).
    folder.chmod(0o700)
    (folder / STATE_FILE).unlink(missing_ok=True)
    log = folder / LOG_FILE
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.warm_process", str(server_dir.resolve())],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=user_environment(),
            # A folder without .env, prefect.toml or pyproject.toml, whatever the caller's.
            cwd=folder,
            # A session of its own: it outlives this command and ignores its Ctrl-C.
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        if (state := read_state(server_dir)) is not None and state.pid == process.pid:
            break
        time.sleep(0.05)
    return process.pid


def enabled() -> bool:
    """False with FACTORY_WARM_START=off: no warm process is started or used."""
    return os.environ.get("FACTORY_WARM_START", "").strip().lower() not in OFF


def ensure(server_dir: Path, wait_s: float = 0.0, *, for_this_environment: bool = False) -> None:
    """A warm process running the code on disk: started, or restarted when the code moved.

    ``for_this_environment`` (`factory server start`): also restarted when it serves
    another environment than this command's. A `factory run` does not restart it for
    that: two shells with different settings would take turns paying its imports.
    """
    state = running(server_dir)
    if state is not None and (
        state.fingerprint != code_fingerprint()
        or (for_this_environment and not state.serves(user_environment()))
    ):
        stop(server_dir)
    start(server_dir, wait_s)


def stop(server_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the warm process and wait for it (SIGKILL after ``timeout_s``); its PID, or
    None when none ran. Children serving commands finish their command on their own."""
    state = read_state(server_dir)
    stopped = None
    if state is not None and _is_warm(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _is_warm(state.pid):
            if time.monotonic() > deadline:
                os.kill(state.pid, signal.SIGKILL)
            time.sleep(0.05)
        stopped = state.pid
    folder = warm_dir(server_dir)
    (folder / STATE_FILE).unlink(missing_ok=True)
    (folder / SOCKET_FILE).unlink(missing_ok=True)
    return stopped


def _is_warm(pid: int) -> bool:
    return alive(pid) and b"cli.warm_process" in command_line(pid)
