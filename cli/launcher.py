"""The `factory` command: hands the command to the warm starter, or runs it here.

Only the standard library is imported before the decision: a `factory run` that the warm
starter (cli/warm_process.py) serves costs this process milliseconds instead of the 3 CPU
seconds of importing Prefect and the flows. The launcher connects to the starter's unix
socket under FACTORY_HOME/server/warm, sends argv, the working directory, the umask and
the environment with its stdin, stdout and stderr (SCM_RIGHTS), forwards SIGINT, SIGTERM
and SIGHUP, and exits as the child did. When there is no starter, when it refuses (another
environment, changed code, a command it does not serve), with FACTORY_WARM_START=off, or
with FACTORY_LOCAL_SERVER=false (tests, CI), it runs `cli.main.main` in this process as
before. FACTORY_WARM_START=debug prints one line to stderr saying which path was taken.
"""

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

HEADER = struct.Struct("!I")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Time for the starter to accept or refuse (it forks within milliseconds when idle).
REPLY_TIMEOUT_S = 15.0
# How pydantic reads FACTORY_LOCAL_SERVER=false (Settings.local_server).
FALSE = ("0", "off", "f", "false", "n", "no")


def socket_path() -> Path:
    """The warm starter's socket for this environment's FACTORY_HOME (Settings' default)."""
    home = os.environ.get("FACTORY_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "asset-factory"
    return base / "server" / "warm" / "warm.sock"


def _debug(message: str) -> None:
    if os.environ.get("FACTORY_WARM_START", "").lower() == "debug":
        print(f"factory: {message}", file=sys.stderr, flush=True)


def _connect() -> socket.socket | None:
    if os.environ.get("FACTORY_WARM_START", "").lower() in ("off", "0", "false", "no"):
        return None
    if os.environ.get("FACTORY_LOCAL_SERVER", "").strip().lower() in FALSE:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(REPLY_TIMEOUT_S)
        conn.connect(str(socket_path()))
    except OSError as error:
        conn.close()
        _debug(f"no warm starter ({error.strerror or error}); running here")
        return None
    return conn


def _request(conn: socket.socket) -> bytes:
    umask = os.umask(0)
    os.umask(umask)
    return json.dumps(
        {
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "umask": umask,
            "env": dict(os.environ),
            # The script's folder: where a fresh interpreter looks for modules first.
            "path0": sys.path[0],
        }
    ).encode()


class _Replies:
    """The starter's newline-separated JSON messages on ``conn``."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def next(self) -> dict | None:
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def _served(conn: socket.socket) -> int | None:
    """The served command's exit code, or None when the starter refused or failed early."""
    replies = _Replies(conn)
    caught: list[int] = []

    def forward(signum: int, frame: object) -> None:
        # Sent even before the child exists: the starter reads it once it has forked.
        caught.append(signum)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"signal": signum}).encode() + b"\n")

    previous = {number: signal.signal(number, forward) for number in FORWARDED}
    try:
        payload = _request(conn)
        socket.send_fds(conn, [HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        first = replies.next()
    except (OSError, ValueError) as error:
        first = {"refused": f"no answer ({error})"}
    if first is None or "refused" in first:
        _debug(f"the warm starter refused: {first and first['refused']}; running here")
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught:
            # A signal that came while asking is this process's own again.
            signal.raise_signal(number)
        return None
    conn.settimeout(None)
    _debug(f"served by the warm starter: {first}")
    message = first
    while True:
        if "exit" in message:
            return int(message["exit"])
        if "signal" in message:
            # Die as the child died, so the shell reports the same (e.g. "Terminated").
            number = int(message["signal"])
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return 128 + number
        try:
            message = replies.next()
        except (OSError, ValueError):
            message = None
        if message is None:
            print("factory: the warm starter went away before the command ended; its "
                  "outcome is unknown (see `factory server status`)", file=sys.stderr)  # fmt: skip
            return 1


def main() -> None:
    conn = _connect()
    if conn is not None:
        with conn:
            code = _served(conn)
        if code is not None:
            sys.exit(code)
    from cli.main import main as run_here

    run_here()
