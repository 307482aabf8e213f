"""Run a Prefect worker that stops when asked: one SIGTERM (or Ctrl-C) ends it within seconds.

    python deployments/worker.py --pool factory-cpu [any other `prefect worker start` option]

Prefect 3.9.1's `prefect worker start` turns the first SIGTERM into a SIGINT to itself and
then never exits (measured: alive 150 s after it, idle); only a second signal kills it. A
supervisor (systemd, Docker, Kubernetes) sends one and waits its grace period, so every
stop took that long. This wrapper starts the worker as a child, and on SIGTERM or SIGINT
passes the signal on (the worker stops polling for new runs), gives it
``FACTORY_WORKER_STOP_GRACE_S`` seconds (default 3) to exit by itself, then kills it.

Flow runs the worker already started are separate processes and are not signalled: they
finish and report to the API on their own. (In a container they end with it; a run that
ends without reporting is marked Crashed by the next start on that host, see
flows/crashed_runs.py.)
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

DEFAULT_GRACE_S = 3.0


def prefect_command(args: list[str]) -> list[str]:
    """`prefect worker start ARGS` from the same environment as this Python."""
    prefect = Path(sys.executable).with_name("prefect")
    return [str(prefect) if prefect.exists() else "prefect", "worker", "start", *args]


def run(args: list[str], grace_s: float) -> int:
    """Run the worker until it exits (its status) or a stop signal arrives (then 0)."""
    worker = subprocess.Popen(prefect_command(args))
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        name = signal.Signals(signum).name
        print(f"worker.py: {name}: stopping the worker (pid {worker.pid})", file=sys.stderr)
        worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while worker.poll() is None and not stopping.is_set():
        stopping.wait(0.2)
    if not stopping.is_set():
        return worker.returncode
    try:
        worker.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    return 0


def main() -> None:
    grace_s = float(os.environ.get("FACTORY_WORKER_STOP_GRACE_S", DEFAULT_GRACE_S))
    sys.exit(run(sys.argv[1:], grace_s))


if __name__ == "__main__":
    main()
