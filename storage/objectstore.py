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
