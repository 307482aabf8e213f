"""Whether a process the factory started (the local server, the warm starter) still runs."""

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while ``pid`` runs and is not a zombie; reaps it when this process started it."""
    try:
        # Reaps it when this process started it; a zombie is gone for our purposes.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # "pid (name) S ...": a Z there is a zombie another parent has yet to reap.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def command_line(pid: int) -> list[bytes]:
    """The process's argv as /proc shows it, empty when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
