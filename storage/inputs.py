"""Reading an order's input images by reference: a store digest, an s3:// URI or a file.

Every kind of reference is read the same careful way: its size is known before its bytes
are fetched (an oversized object is never downloaded), a digest's bytes are checked
against the digest, and a missing object is bad input that says how to provide it.
"""

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from factory.assets import sha256_hex
from factory.errors import BadInput, IntegrityError, ObjectNotFound
from factory.orders import image_ref_kind
from factory.settings import StoreTimeouts
from media.images import check_image_bytes
from storage.assets import asset_key
from storage.objectstore import ObjectStore
from storage.open import open_store


def file_path(ref: str) -> Path:
    """The local path an image reference names (a path, or a file:// URI)."""
    if image_ref_kind(ref) == "file":
        return Path(unquote(urlsplit(ref).path))
    return Path(ref).expanduser()


@dataclass(frozen=True)
class InputSource:
    """Where references that are not local files are read: the run's store, and how long
    calls to other S3 buckets may wait."""

    store: ObjectStore | None = None
    timeouts: StoreTimeouts | None = None

    def read(self, ref: str, what: str) -> bytes:
        """The bytes of a digest or s3:// reference, checked for size before they are read."""
        kind = image_ref_kind(ref)
        if kind == "digest":
            return self._read_digest(ref.removeprefix("sha256:"), what)
        if kind == "s3":
            parts = urlsplit(ref)
            store = open_store(f"s3://{parts.netloc}", self.timeouts)
            return _read_object(store, parts.path.lstrip("/"), what, f"upload it to {ref}")
        raise ValueError(f"{ref} is a local file, not a stored input")

    def _read_digest(self, digest: str, what: str) -> bytes:
        if self.store is None:
            raise BadInput(f"{what} names a stored input, but no store was given to read it from")
        advice = f"upload the file first with `factory assets put FILE --store {self.store.url}`"
        data = _read_object(self.store, asset_key(digest), what, advice)
        actual = sha256_hex(data)
        if actual != digest:
            raise IntegrityError(
                f"{what}: the stored bytes hash to {actual}, not {digest}; delete "
                f"{self.store.uri(asset_key(digest))} and upload the file again"
            )
        return data


def _read_object(store: ObjectStore, key: str, what: str, advice: str) -> bytes:
    info = store.head(key)
    if info is None:
        raise BadInput(f"{what} is not in {store.url}: {advice}")
    # Refused from its size alone: a 1 GiB object is never fetched.
    check_image_bytes(info.size, what)
    try:
        data = store.get(key)
    except ObjectNotFound:
        raise BadInput(f"{what} is not in {store.url}: {advice}") from None
    check_image_bytes(len(data), what)
    return data
