"""One quality judge per process and thresholds, shared by the stages that judge.

Built on the first judgement: importing Great Expectations costs seconds, which a fully
cached run never pays. A Great Expectations context is used by one thread at a time.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from quality.thresholds import Thresholds

if TYPE_CHECKING:
    from quality.judge import Judge


@contextmanager
def judging(thresholds: Thresholds) -> Iterator["Judge"]:
    """The process's judge for ``thresholds``, held for this thread alone."""
    judge, lock = _judge(thresholds.model_dump_json())
    with lock:
        yield judge


@lru_cache(maxsize=4)
def _judge(thresholds: str) -> tuple["Judge", threading.Lock]:
    # Imported here: the judge's decoding (PyAV, numpy) and Great Expectations are for runs
    # that judge something, not for a fully cached one.
    from quality.judge import Judge

    return Judge(Thresholds.model_validate_json(thresholds)), threading.Lock()
