"""Process-wide progress events, so a CLI can draw bars while Prefect runs tasks in threads.

Prefect's own task states reach the UI; this is for the terminal of the process
that runs the flow, and costs nothing when nobody listens.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

# "rejected" follows a gate's "finished" when its verdict failed: the segment goes again.
Event = Literal["started", "finished", "failed", "rejected"]
Listener = Callable[[str, int | None, Event], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(stage: str, segment_index: int | None, event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(stage, segment_index, event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
