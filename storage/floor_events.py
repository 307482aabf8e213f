"""Floor events and worker availability in the object store: write-once JSON-lines batches.

Layout::

    floor/events/<flow_run_id>/<batch_id>.jsonl         one FloorEvent per line
    floor/availability/<worker_id>/<batch_id>.jsonl     one WorkerAvailability per line

Every object is written once (``put_if_absent``) and never changed, so workers on
many hosts need nothing shared but the bucket: no database, no lock. Writing the
same batch again (a retried flush) is a no-op; different bytes under the same key
raise WriteConflict. The warehouse (``storage.warehouse``) ingests new objects by
key and deduplicates events by ``event_id``, so an event written twice (once by a
failing task, once more by the flow's final flush) counts once.

Written from inside the Prefect tasks (``tasks.floor``): each task attempt writes its
own event the moment it ends, and each run its worker's availability::

    EventWriter(store).write_event(FloorEvent.from_run(result.run, order_id=…, …))
    EventWriter(store).write_availability(worker_id, [interval], batch_id=flow_run_id)
"""

import re
import uuid
from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from factory.errors import BadInput, IntegrityError, validation_problems
from factory.floor import FloorEvent, WorkerAvailability
from storage.objectstore import ObjectStore, write_once

EVENTS_PREFIX = "floor/events/"
AVAILABILITY_PREFIX = "floor/availability/"
CONTENT_TYPE = "application/x-ndjson"
SUFFIX = ".jsonl"

T = TypeVar("T", bound=BaseModel)

# One safe key segment: Prefect run ids (UUIDs), uuid hex batch ids, hostname:pid.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise BadInput(
            f"{value!r} is not a usable {what}: use 1 to 128 letters, digits, '.', '_', ':' "
            "and '-', starting with a letter or digit."
        )
    return value


def events_key(flow_run_id: str, batch_id: str) -> str:
    return (
        f"{EVENTS_PREFIX}{_segment(flow_run_id, 'flow run id')}/"
        f"{_segment(batch_id, 'batch id')}{SUFFIX}"
    )


def availability_key(worker_id: str, batch_id: str) -> str:
    return (
        f"{AVAILABILITY_PREFIX}{_segment(worker_id, 'worker id')}/"
        f"{_segment(batch_id, 'batch id')}{SUFFIX}"
    )


def encode_lines(items: Iterable[BaseModel]) -> bytes:
    """JSON lines, one object per line, each ending in a newline."""
    return b"".join(item.model_dump_json().encode() + b"\n" for item in items)


def _parse_lines(data: bytes, model: type[T], where: str) -> list[T]:
    items = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate_json(line))
        except ValidationError as error:
            (first,) = validation_problems(error, root="line", limit=1)
            raise IntegrityError(
                f"{where} line {number} is not a valid {model.__name__}: {first}"
            ) from None
    return items


def parse_events(data: bytes, where: str = "events object") -> list[FloorEvent]:
    """The events in one JSON-lines object; IntegrityError names the first bad line."""
    return _parse_lines(data, FloorEvent, where)


def parse_availability(data: bytes, where: str = "availability object") -> list[WorkerAvailability]:
    return _parse_lines(data, WorkerAvailability, where)


class EventWriter:
    """Writes floor events and availability to a store, write-once and batched."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write_batch(self, flow_run_id: str, batch_id: str, events: Iterable[FloorEvent]) -> str:
        """Store events as one object under floor/events/<flow_run_id>/<batch_id>.jsonl."""
        events = list(events)
        if not events:
            raise BadInput("write_batch got no events; write a batch only when there are some.")
        key = events_key(flow_run_id, batch_id)
        self._put_once(key, encode_lines(events))
        return key

    def write_event(self, event: FloorEvent) -> str:
        """One event as its own batch (batch id = event id): for a task's failure path."""
        return self.write_batch(event.flow_run_id, event.event_id, [event])

    def write_availability(
        self,
        worker_id: str,
        intervals: Iterable[WorkerAvailability],
        batch_id: str | None = None,
    ) -> str:
        """Store availability intervals under floor/availability/<worker_id>/<batch_id>.jsonl."""
        intervals = list(intervals)
        if not intervals:
            raise BadInput("write_availability got no intervals.")
        strangers = {each.worker_id for each in intervals} - {worker_id}
        if strangers:
            raise BadInput(
                f"availability for worker {worker_id!r} holds intervals of "
                f"{', '.join(sorted(strangers))}; write each worker's intervals under its own id."
            )
        key = availability_key(worker_id, batch_id or uuid.uuid4().hex)
        self._put_once(key, encode_lines(intervals))
        return key

    def _put_once(self, key: str, data: bytes) -> None:
        write_once(
            self._store,
            key,
            data,
            CONTENT_TYPE,
            "floor objects are write-once: pick a new batch id.",
        )


def list_event_keys(store: ObjectStore, flow_run_id: str | None = None) -> list[str]:
    """Keys of event objects, all or one flow run's, in key order."""
    prefix = EVENTS_PREFIX if flow_run_id is None else f"{EVENTS_PREFIX}{flow_run_id}/"
    return [key for key in store.list(prefix) if key.endswith(SUFFIX)]


def list_availability_keys(store: ObjectStore, worker_id: str | None = None) -> list[str]:
    prefix = AVAILABILITY_PREFIX if worker_id is None else f"{AVAILABILITY_PREFIX}{worker_id}/"
    return [key for key in store.list(prefix) if key.endswith(SUFFIX)]
