"""The one narrow interface every object store implements.

Keys are '/'-separated relative paths ("assets/sha256/ab/abcd…"). Implementations
must make ``put`` and ``put_if_absent`` atomic: a reader never sees half an object.
"""

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from pydantic import BaseModel


class ObjectInfo(BaseModel):
    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    @property
    def url(self) -> str:
        """The store's own address: a directory path or s3://bucket/prefix."""
        ...

    def uri(self, key: str) -> str:
        """Absolute URI of one key (file:///… or s3://bucket/prefix/key)."""
        ...

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write or replace an object atomically."""
        ...

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        """Write only if the key does not exist; True if this call wrote it."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound when absent."""
        ...

    def sha256(self, key: str) -> str:
        """SHA-256 hex of an object's bytes, streamed rather than held in memory.

        Raises ObjectNotFound when absent.
        """
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size of an object, or None when absent."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with prefix, in lexicographic order."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; deleting an absent key is not an error."""
        ...

    def check_writable(self) -> None:
        """Fail fast with StoreUnavailable when the store cannot be written."""
        ...


def write_once(store: ObjectStore, key: str, data: bytes, content_type: str, advice: str) -> None:
    """Write ``data`` at ``key`` unless it is there already; identical bytes are a no-op.

    Different bytes raise WriteConflict with ``advice`` (what the reader should do).
    """
    from factory.assets import sha256_hex
    from factory.errors import ObjectNotFound, WriteConflict

    if store.put_if_absent(key, data, content_type):
        return
    # Not written: another writer got there first, or a retried S3 put of ours landed;
    # only the bytes tell which.
    try:
        existing = store.get(key)
    except ObjectNotFound:
        existing = None
    if existing != data:
        held = f" (sha256 {sha256_hex(existing)})" if existing is not None else ""
        raise WriteConflict(f"{store.uri(key)} already holds different bytes{held}: {advice}")
