"""The warm starter: imports what `factory run` needs once, then forks a child per command.

    python -m cli.warm_process SERVER_DIR

Started by cli.warm.start next to the local Prefect server. It imports Prefect, the CLI,
the flows and the task modules with `run`'s quiet settings, drops the CLI's own modules
again (they build rich consoles that look at the terminal when imported, and the child
has the user's terminal, not ours), and listens on SERVER_DIR/warm/warm.sock. For each
request from cli/launcher.py (argv, cwd, umask, environment, and the caller's stdin,
stdout and stderr as file descriptors) it checks that a fresh process would have imported
the same thing (cli.warm's rules), that only one thread runs (a fork copies no other
thread, so locks another thread held would stay locked in the child), then forks. The
child adopts the caller's descriptors, directory, umask and environment, runs the normal
`cli.main.main`, shuts down as an interpreter would, and reports its exit code; this
process reports a child killed by a signal and forwards the signals the launcher relays.
"""

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli import warm

HEADER = struct.Struct("!I")
MAX_REQUEST = 1 << 20
REQUEST_TIMEOUT_S = 5.0
# How often an idle warm process checks that its socket is still its own.
SOCKET_CHECK_S = 30.0
WARM_IMPORTS = (
    "prefect",
    "prefect.client.orchestration",
    "cli.main",
    "cli.runner",
    "cli.local_server",
    "flows.produce",
    "flows.crashed_runs",
    "tasks.resources",
    "tasks.prepare",
    "storage.inputs",
    "storage.assets",
    "media.devices",
    # What a fully cached run imports on its way (bench/RESULTS.md, "warm starter"):
    # Prefect's engines, the warehouse's pandas, the inputs' image and font readers.
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.engine",
    "prefect.concurrency.sync",
    "prefect.telemetry.run_telemetry",
    "prefect.utilities.visualization",
    "fastapi",
    "anyio._backends._asyncio",
    "opentelemetry._logs",
    "encodings.idna",
    "rich.json",
    "duckdb",
    "pandas",
    "numpy",
    "PIL.Image",
    "fontTools.ttLib.tables._c_m_a_p",
    "fontTools.ttLib.tables._m_a_x_p",
    "fontTools.ttLib.tables._p_o_s_t",
    "fontTools.unicode",
    "_strptime",
    "tarfile",
)


@dataclass
class Child:
    """A command being served: the forked process and its launcher's connection."""

    pid: int
    conn: socket.socket
    pidfd: int


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {message}", flush=True)


def warm_up() -> dict[str, str]:
    """Import what a run needs; returns the user's environment the requests must match."""
    environment = dict(os.environ)
    warm.apply_quiet_defaults(verbose=False)
    for name in WARM_IMPORTS:
        __import__(name)
    # The image formats a run's inputs come in (PNG, JPEG, ...), registered as on first open.
    sys.modules["PIL.Image"].preinit()
    for name in [name for name in sys.modules if name == "cli" or name.startswith("cli.")]:
        # This module keeps its own reference to cli.warm; children import theirs afresh.
        del sys.modules[name]
    return environment


class Starter:
    """The listening socket, the commands being served, and the loop that watches them."""

    def __init__(self, server_dir: Path, environment: dict[str, str]) -> None:
        self.environment = environment
        self.fingerprint = warm.code_fingerprint()
        self.folder = warm.warm_dir(server_dir)
        self.path = self.folder / warm.SOCKET_FILE
        self.path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(16)
        self.inode = self.path.stat().st_ino
        # SIGTERM wakes the loop through this pair (select would otherwise sleep on).
        self.wake_read, self.wake_write = socket.socketpair()
        for end in (self.wake_read, self.wake_write):
            end.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        self.children: dict[int, Child] = {}
        self.stopping = False

    def serve(self, server_dir: Path) -> None:
        signal.set_wakeup_fd(self.wake_write.fileno())
        signal.signal(signal.SIGTERM, self._on_term)
        state = warm.WarmState(
            pid=os.getpid(),
            socket=self.path,
            started=datetime.now(UTC),
            fingerprint=self.fingerprint,
            environment=warm.environment_digest(self.environment),
            log=self.folder / warm.LOG_FILE,
        )
        temp = self.folder / f".{warm.STATE_FILE}.{os.getpid()}"
        temp.write_text(state.model_dump_json(indent=2))
        temp.replace(self.folder / warm.STATE_FILE)
        log(f"listening on {self.path} (pid {os.getpid()}, threads {threading.active_count()})")
        try:
            while not self.stopping:
                if not self._own_socket():
                    # FACTORY_HOME removed, or another warm process took the path: no
                    # launcher can reach this one any more.
                    log(f"{self.path} is no longer this process's socket; stopping")
                    break
                for key, _ in self.selector.select(timeout=SOCKET_CHECK_S):
                    if key.data == "accept":
                        self.accept(self.listener.accept()[0])
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self.wake_read.recv(4096)
                    elif key.data[0] == "conn":
                        self.relay(key.data[1])
                    else:
                        self.reap(key.data[1])
        finally:
            if self._own_socket():
                self.path.unlink()
            self.listener.close()
            current = warm.read_state(server_dir)
            if current is not None and current.pid == os.getpid():
                (self.folder / warm.STATE_FILE).unlink(missing_ok=True)
            log(f"stopped; {len(self.children)} command(s) still running finish on their own")

    def _own_socket(self) -> bool:
        try:
            return self.path.stat().st_ino == self.inode
        except OSError:
            return False

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def accept(self, conn: socket.socket) -> None:
        """Read one request and fork its child, or refuse it; the child never returns."""
        fds: list[int] = []
        child = None
        try:
            conn.settimeout(REQUEST_TIMEOUT_S)
            credentials = conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            peer_uid = struct.unpack("3i", credentials)[1]
            if peer_uid != os.getuid():
                log(f"refused a connection from uid {peer_uid}")
                return
            header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
            request = json.loads(receive(conn, HEADER.unpack(header)[0]))
            reason = self.refusal(request, fds)
            if reason is not None:
                log(f"refused {request.get('argv')!r}: {reason}")
                send(conn, {"refused": reason})
                return
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self.run_child(conn, fds, request)
            child = Child(pid=pid, conn=conn, pidfd=os.pidfd_open(pid))
            self.children[pid] = child
            self.selector.register(conn, selectors.EVENT_READ, ("conn", child))
            self.selector.register(child.pidfd, selectors.EVENT_READ, ("exit", child))
            log(f"serving {request['argv']!r} in {request['cwd']} as pid {pid}")
            conn.settimeout(None)
            send(conn, {"pid": pid})
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            log(f"dropped a request: {error!r}")
        finally:
            for fd in fds:
                os.close(fd)
            if child is None:
                conn.close()

    def refusal(self, request: dict, fds: list[int]) -> str | None:
        if len(fds) != 3:
            return f"{len(fds)} file descriptors instead of stdin, stdout and stderr"
        if (reason := warm.unserved_reason(request["argv"])) is not None:
            return reason
        if differing := warm.environment_difference(self.environment, request["env"]):
            return f"environment differs: {', '.join(differing[:10])}"
        if warm.code_fingerprint() != self.fingerprint:
            return "the code on disk changed since the warm process imported it"
        if not os.path.isdir(request["cwd"]):
            return f"{request['cwd']} is not a directory here"
        if (reason := warm.working_directory_reason(Path(request["cwd"]))) is not None:
            return reason
        if (threads := threading.active_count()) != 1:
            return f"{threads} threads run in the warm process; it forks only with one"
        return None

    def relay(self, child: Child) -> None:
        """A signal the launcher forwards, or its end closing (the user's process is gone)."""
        try:
            data = child.conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(child.conn)
            _signal(child, signal.SIGTERM)
            return
        for line in data.splitlines():
            try:
                number = int(json.loads(line)["signal"])
            except (ValueError, KeyError, TypeError):
                continue
            if number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                _signal(child, number)

    def reap(self, child: Child) -> None:
        """The child ended: report a death by signal (a normal exit reports itself)."""
        _, status = os.waitpid(child.pid, 0)
        self.selector.unregister(child.pidfd)
        os.close(child.pidfd)
        child.pidfd = -1
        if os.WIFSIGNALED(status):
            with contextlib.suppress(OSError):
                send(child.conn, {"signal": os.WTERMSIG(status)})
        with contextlib.suppress(KeyError):
            self.selector.unregister(child.conn)
        child.conn.close()
        del self.children[child.pid]

    def run_child(self, conn: socket.socket, fds: list[int], request: dict) -> None:
        """In the forked child: become the caller's process, run the CLI, exit with its code."""
        code = 1
        try:
            # Closing (not unregistering: the epoll set is shared with the parent) what
            # belongs to the warm process and to the other commands it serves.
            signal.set_wakeup_fd(-1)
            self.selector.close()
            for own in (self.listener, self.wake_read, self.wake_write):
                own.close()
            for other in self.children.values():
                other.conn.close()
                os.close(other.pidfd)
            for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(number, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            fds.clear()
            os.chdir(request["cwd"])
            os.umask(request["umask"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = list(request["argv"])
            sys.path[0] = str(request["path0"])
            # As a fresh interpreter would have it: line-buffered on a terminal.
            sys.stdout.reconfigure(line_buffering=os.isatty(1))
            code = run_main()
        finally:
            try:
                send(conn, {"exit": code})
            finally:
                os._exit(code)


def receive(conn: socket.socket, length: int) -> bytes:
    if length > MAX_REQUEST:
        raise ValueError(f"request of {length} bytes")
    data = b""
    while len(data) < length:
        chunk = conn.recv(length - len(data))
        if not chunk:
            raise ValueError("request cut short")
        data += chunk
    return data


def send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _signal(child: Child, number: int) -> None:
    # Through the pidfd, and only while unreaped: the PID cannot belong to anyone else.
    if child.pidfd >= 0:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(child.pidfd, number)


def run_main() -> int:
    """Run `factory` as the interpreter would: its exit code after threads and atexit."""
    try:
        from cli.main import main

        main()
        code = 0
    except SystemExit as done:
        code = exit_code(done.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # What Py_FinalizeEx does before tearing down: join non-daemon threads, run atexit.
    threading._shutdown()  # type: ignore[attr-defined]
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            # The interpreter's own exit status when flushing stdout fails.
            code = 120 if code == 0 else code
    return code


def exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        print(value, file=sys.stderr)
    except Exception:
        traceback.print_exc()
    return 1


def main() -> None:
    server_dir = Path(sys.argv[1])
    Starter(server_dir, warm_up()).serve(server_dir)


if __name__ == "__main__":
    main()
