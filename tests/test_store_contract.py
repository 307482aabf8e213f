"""One contract, every backend: what the rest of the factory may rely on from a store."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from factory.errors import BadInput, ObjectNotFound
from storage.local import LocalStore
from storage.objectstore import ObjectInfo, ObjectStore
from storage.s3 import S3Store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    s3 = request.getfixturevalue("s3_env")
    # No endpoint argument: the store must find the server through AWS_ENDPOINT_URL.
    return S3Store(s3.make_bucket(), "factory/run")


def test_is_an_object_store(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    store.check_writable()


def test_put_then_get_returns_the_bytes(store: ObjectStore) -> None:
    store.put("assets/one.bin", b"\x00\x01payload\xff")
    assert store.get("assets/one.bin") == b"\x00\x01payload\xff"


def test_sha256_streams_the_stored_bytes(store: ObjectStore) -> None:
    import hashlib

    data = bytes(range(256)) * 20_000
    store.put("assets/big.bin", data)
    assert store.sha256("assets/big.bin") == hashlib.sha256(data).hexdigest()
    with pytest.raises(ObjectNotFound):
        store.sha256("assets/absent.bin")


def test_put_replaces(store: ObjectStore) -> None:
    store.put("k.txt", b"first")
    store.put("k.txt", b"second, longer")
    assert store.get("k.txt") == b"second, longer"


def test_put_if_absent_writes_once_and_keeps_the_first_bytes(store: ObjectStore) -> None:
    assert store.put_if_absent("once/k", b"first") is True
    assert store.put_if_absent("once/k", b"second") is False
    assert store.get("once/k") == b"first"


def test_head_gives_the_size_or_none(store: ObjectStore) -> None:
    store.put("sized/k", b"12345")
    assert store.head("sized/k") == ObjectInfo(key="sized/k", size=5)
    assert store.head("sized/missing") is None


def test_list_by_prefix_is_sorted_and_excludes_other_prefixes(store: ObjectStore) -> None:
    # "a-c" < "a/b/c" < "a0" in byte order; a directory-tree walk puts "a/…" before "a-c".
    keys = ["a0", "a/b/c", "a-c", "a/b/d", "b/x", "ab"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list()) == sorted(keys)
    assert list(store.list("a/")) == ["a/b/c", "a/b/d"]
    assert list(store.list("a/b/")) == ["a/b/c", "a/b/d"]
    assert list(store.list("a/b/c")) == ["a/b/c"]
    assert list(store.list("a")) == ["a-c", "a/b/c", "a/b/d", "a0", "ab"]
    assert list(store.list("c/")) == []


def test_delete_removes_and_tolerates_missing(store: ObjectStore) -> None:
    store.put("gone/k", b"x")
    store.delete("gone/k")
    assert store.head("gone/k") is None
    assert list(store.list("gone/")) == []
    store.delete("gone/k")
    store.delete("never/was")


def test_get_missing_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="missing/k"):
        store.get("missing/k")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/", "../up", "a/../b", "./a", "a\\b"])
def test_invalid_keys_are_bad_input(store: ObjectStore, key: str) -> None:
    with pytest.raises(BadInput):
        store.put(key, b"x")
    with pytest.raises(BadInput):
        store.put_if_absent(key, b"x")
    with pytest.raises(BadInput):
        store.get(key)


def test_uri_names_the_key_under_the_store(store: ObjectStore) -> None:
    if isinstance(store, LocalStore):
        assert store.uri("a/b.bin") == Path(store.url, "a/b.bin").as_uri()
        assert store.uri("a/b.bin").startswith("file:///")
    else:
        assert store.url.startswith("s3://test-")
        assert store.url.endswith("/factory/run")
        assert store.uri("a/b.bin") == f"{store.url}/a/b.bin"


def test_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.head("empty") == ObjectInfo(key="empty", size=0)
    assert store.put_if_absent("empty", b"not empty") is False


def test_five_megabyte_object(store: ObjectStore) -> None:
    data = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    store.put("big/object", data)
    assert store.head("big/object") == ObjectInfo(key="big/object", size=len(data))
    assert store.get("big/object") == data


def test_concurrent_put_if_absent_has_exactly_one_winner(store: ObjectStore) -> None:
    writers = 8
    start = threading.Barrier(writers)
    payloads = [f"writer {i}".encode() for i in range(writers)]

    def write(data: bytes) -> bool:
        start.wait()
        return store.put_if_absent("race/k", data)

    with ThreadPoolExecutor(writers) as pool:
        wrote = list(pool.map(write, payloads))
    assert wrote.count(True) == 1
    assert store.get("race/k") == payloads[wrote.index(True)]
