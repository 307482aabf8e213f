"""Turn a --store argument into an object store."""

import re
from pathlib import Path
from urllib.parse import urlsplit

from factory.errors import BadInput, shorten
from factory.settings import StoreTimeouts
from storage.local import LocalStore
from storage.objectstore import ObjectStore

_EXAMPLE = "s3://my-bucket or s3://my-bucket/some/prefix"
# S3's bucket naming rules, checked here so a typo fails before any network call.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Anything that starts like a URL ("scheme:") but is not s3:// would otherwise become a
# directory literally named "gs:", "http:" or, for the typo s3:/bucket, "s3:". One letter
# before the colon is not taken for a scheme (a drive letter elsewhere).
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def open_store(spec: str | Path, timeouts: StoreTimeouts | None = None) -> ObjectStore:
    """s3://bucket/prefix opens an S3Store (with ``timeouts``); a path is a local
    directory; other URLs fail.

    A directory whose name starts with ``word:`` can still be given as ``./word:…``.
    """
    if isinstance(spec, Path):
        return LocalStore(spec.expanduser())
    if spec.startswith("s3://"):
        return _open_s3(spec, timeouts)
    if _URL_LIKE.match(spec):
        scheme = spec.split(":", 1)[0]
        hint = (
            f"did you mean s3://{spec.split(':', 1)[1].lstrip('/')}? "
            if scheme.lower() == "s3"
            else ""
        )
        raise BadInput(
            f"Unsupported store {shorten(spec, 100)!r}: {hint}use a directory path or an S3 URL "
            f"such as {_EXAMPLE} (a directory whose name has a colon: ./{shorten(spec, 40)})."
        )
    return LocalStore(Path(spec).expanduser())


def _open_s3(spec: str, timeouts: StoreTimeouts | None) -> ObjectStore:
    parts = urlsplit(spec)
    if not parts.netloc:
        raise BadInput(f"The store URL {spec!r} names no bucket; write it as {_EXAMPLE}.")
    if not _BUCKET_NAME.fullmatch(parts.netloc):
        raise BadInput(
            f"{parts.netloc!r} in {spec!r} is not a valid S3 bucket name (3 to 63 lowercase "
            f"letters, digits, dots and hyphens); write the store as {_EXAMPLE}."
        )
    if parts.query or parts.fragment:
        raise BadInput(f"The store URL {spec!r} may not carry '?' or '#'; write it as {_EXAMPLE}.")
    timeouts = timeouts or StoreTimeouts()
    # boto3 takes a fifth of a second to import: only S3 stores pay it.
    from storage.s3 import S3Store

    return S3Store(
        parts.netloc,
        parts.path.strip("/"),
        connect_timeout=timeouts.connect_s,
        read_timeout=timeouts.read_s,
        max_attempts=timeouts.attempts,
    )
