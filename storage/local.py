"""An object store on a local directory: the embedded default."""

import errno
import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from factory.errors import BadInput, ObjectNotFound, StoreError, StoreUnavailable
from storage.objectstore import ObjectInfo

# Staged writes live next to their target so that the final rename or link never
# crosses a filesystem; keys may not use this prefix, so listing can skip them.
_TEMP_PREFIX = ".tmp-"

# Errors that mean the directory as a whole cannot take writes, as opposed to one
# key that clashes with another (a file where a directory is needed).
_UNAVAILABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def validate_key(key: str) -> str:
    """Return key unchanged if it is a relative '/'-separated path; else raise BadInput."""
    if not isinstance(key, str) or not key:
        raise BadInput(f"Invalid object key {key!r}: a key is a non-empty relative path.")
    if key.startswith("/"):
        raise BadInput(f"Invalid object key {key!r}: keys are relative, drop the leading '/'.")
    if "\\" in key or "\x00" in key:
        raise BadInput(f"Invalid object key {key!r}: backslashes and NUL are not allowed.")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise BadInput(
                f"Invalid object key {key!r}: empty, '.' and '..' path segments are not allowed."
            )
        if segment.startswith(_TEMP_PREFIX):
            raise BadInput(
                f"Invalid object key {key!r}: segments starting with {_TEMP_PREFIX!r} are reserved."
            )
    return key


def _create_temp(directory: Path) -> tuple[int, Path]:
    """A new, exclusively created temp file in directory, open for writing."""
    temp = directory / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
    # Not mkstemp: its files are 0600, and renamed into place they would keep that
    # instead of the umask's permissions every other file here gets.
    return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp


# Each retry follows a prune that emptied the folder: only a storm of deletes repeats one.
_PRUNE_RACE_TRIES = 100


class LocalStore:
    """Objects as files under root; writes are staged in a temp file and renamed into place.

    Unlike S3, a key cannot be both an object and the directory of others ("a" and
    "a/b"); writing the second raises StoreError. Content-addressed keys never clash.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()

    @property
    def url(self) -> str:
        return str(self._root)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        with self._staged(path, data) as temp:
            os.replace(temp, path)

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        path = self._path(key)
        with self._staged(path, data) as temp:
            # link() refuses an existing target, which makes it the atomic write-once.
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"{path.as_uri()} does not exist.") from None
        except OSError as err:
            raise StoreError(f"Cannot read {path}: {err.strerror}.") from err

    def sha256(self, key: str) -> str:
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"{path.as_uri()} does not exist.") from None
        except OSError as err:
            raise StoreError(f"Cannot read {path}: {err.strerror}.") from err

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise StoreError(f"Cannot read {path}: {err.strerror}.") from err
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key=key, size=info.st_size)

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the deepest directory the prefix names instead of the whole tree.
        directory, _, _ = prefix.rpartition("/")
        base = self._path(directory) if directory else self._root
        keys = [key for key in self._walk(base) if key.startswith(prefix)]
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except NotADirectoryError:
            return
        except OSError as err:
            raise self._write_error(path, err) from err
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        # Directories are only how keys are laid out here (S3 has none): one left empty by
        # a delete goes too, or every released lease would leave a folder behind. rmdir
        # refuses a directory a writer has put anything in, its temp file included.
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def check_writable(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            fd, probe = _create_temp(self._root)
            os.close(fd)
            probe.unlink()
        except OSError as err:
            raise self._unavailable(err) from err

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    def _walk(self, base: Path) -> Iterator[str]:
        for directory, _, files in os.walk(base):
            relative = Path(directory).relative_to(self._root)
            for name in files:
                if not name.startswith(_TEMP_PREFIX):
                    yield (relative / name).as_posix()

    @contextmanager
    def _staged(self, path: Path, data: bytes) -> Iterator[Path]:
        """A temp file holding data beside path, removed on exit whatever happened.

        OSErrors from the caller's block (the rename or link) are translated here too.
        """
        for attempt in range(_PRUNE_RACE_TRIES):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, temp = _create_temp(path.parent)
                break
            except (FileNotFoundError, FileExistsError) as err:
                # A delete pruned the directory during our mkdir or before our create.
                if attempt == _PRUNE_RACE_TRIES - 1:
                    raise self._write_error(path, err) from err
            except OSError as err:
                raise self._write_error(path, err) from err
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            yield temp
        except OSError as err:
            raise self._write_error(path, err) from err
        finally:
            # After os.replace the temp name is gone; after os.link or a failure it remains.
            temp.unlink(missing_ok=True)

    def _write_error(self, path: Path, err: OSError) -> StoreError:
        if err.errno in _UNAVAILABLE_ERRNOS or not self._root.is_dir():
            return self._unavailable(err)
        return StoreError(f"Cannot write {path}: {err.strerror}.")

    def _unavailable(self, err: OSError) -> StoreUnavailable:
        return StoreUnavailable(
            f"The store directory {self._root} cannot be written ({err.strerror}: "
            f"{err.filename or self._root}). Choose another --store directory or fix its "
            "permissions, then rerun the order."
        )
