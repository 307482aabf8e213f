"""Failures a user can meet, each turned into an error that says what to do."""

import os
import re
import socket
import time
from pathlib import Path

import pytest

from factory.errors import BadInput, StoreError, StoreUnavailable
from storage.local import LocalStore
from storage.open import open_store
from storage.s3 import S3Store
from tests.s3server import SeaweedFS, free_ports, running_seaweedfs


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("below", ["store", "deeper/store"])
def test_local_root_below_a_regular_file_is_unavailable(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"keep me")
    store = LocalStore(blocker / below)
    with pytest.raises(StoreUnavailable, match=re.escape(str(blocker / below))) as raised:
        store.check_writable()
    assert "--store" in str(raised.value)
    with pytest.raises(StoreUnavailable, match=re.escape(str(blocker / below))):
        store.put("k", b"data")
    with pytest.raises(StoreUnavailable):
        store.put_if_absent("k", b"data")
    assert blocker.read_bytes() == b"keep me"
    assert _files_under(tmp_path) == ["not-a-directory"]


def test_local_root_that_is_a_regular_file_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"")
    with pytest.raises(StoreUnavailable, match=re.escape(str(root))):
        LocalStore(root).check_writable()


def test_local_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("k", b"old")
    with pytest.raises(TypeError):
        store.put("k", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put_if_absent("new", "not bytes")  # type: ignore[arg-type]
    assert store.put_if_absent("k", b"other") is False
    store.check_writable()
    assert _files_under(tmp_path / "store") == ["k"]
    assert store.get("k") == b"old"


def test_local_key_clash_is_a_store_error_not_unavailability(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("a", b"file")
    with pytest.raises(StoreError) as raised:
        store.put("a/b", b"needs a directory named a")
    assert not isinstance(raised.value, StoreUnavailable)
    assert _files_under(tmp_path / "store") == ["a"]


@pytest.mark.s3
@pytest.mark.usefixtures("aws_env")
def test_s3_unreachable_endpoint_fails_fast_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Store("some-bucket", endpoint_url=endpoint, max_attempts=2, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=re.escape(endpoint)) as raised:
        store.check_writable()
    with pytest.raises(StoreUnavailable, match=re.escape(endpoint)):
        store.put("k", b"x")
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "some-bucket" in message
    assert "AWS_ENDPOINT_URL" in message
    assert "rerun" in message


@pytest.mark.s3
def test_s3_wrong_secret_is_a_credentials_problem(
    s3_env: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_env.make_bucket()
    wrong_secret = "definitely-not-the-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    store = S3Store(bucket, max_attempts=1)
    for operation in (store.check_writable, lambda: store.put("k", b"x")):
        with pytest.raises(StoreUnavailable, match="credentials") as raised:
            operation()
        assert wrong_secret not in str(raised.value)
        assert s3_env.secret_key not in str(raised.value)


@pytest.mark.s3
def test_s3_unknown_access_key_is_a_credentials_problem(
    s3_env: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_env.make_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StoreUnavailable, match="credentials"):
        S3Store(bucket, max_attempts=1).put("k", b"x")


@pytest.mark.s3
def test_s3_missing_bucket_names_it_and_says_how_to_create_it(s3_env: SeaweedFS) -> None:
    store = S3Store("no-such-bucket-here", max_attempts=1)
    with pytest.raises(StoreUnavailable, match="'no-such-bucket-here' does not exist") as raised:
        store.check_writable()
    assert "s3 mb s3://no-such-bucket-here" in str(raised.value)
    # The server must not create it on the first write either.
    with pytest.raises(StoreUnavailable, match="no-such-bucket-here"):
        store.put("k", b"x")
    with pytest.raises(StoreUnavailable, match="no-such-bucket-here"):
        store.get("k")


@pytest.mark.parametrize("spec", ["s3://", "s3:///prefix", "s3://Bad_Bucket/x", "s3://b?x=1"])
def test_malformed_s3_url_is_bad_input_with_an_example(spec: str) -> None:
    with pytest.raises(BadInput, match="s3://my-bucket"):
        open_store(spec)


@pytest.mark.parametrize(
    "spec", ["gs://bucket/prefix", "s3:/x", "s3:x", "S3://bucket", "http:/host/p", "file:store"]
)
def test_other_url_schemes_are_bad_input(spec: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="s3://my-bucket"):
        open_store(spec)
    assert list(tmp_path.iterdir()) == []


def test_s3_typo_suggests_the_url() -> None:
    with pytest.raises(BadInput, match="did you mean s3://x/p"):
        open_store("s3:/x/p")


def test_a_directory_with_a_colon_can_still_be_named(tmp_path: Path) -> None:
    assert isinstance(open_store(f"./s3:{tmp_path.name}"), LocalStore)
    assert isinstance(open_store(str(tmp_path / "a:b")), LocalStore)


@pytest.mark.usefixtures("aws_env")
def test_endpoint_without_a_scheme_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:8333")
    with pytest.raises(BadInput, match=re.escape("127.0.0.1:8333")):
        S3Store("some-bucket")


@pytest.mark.usefixtures("aws_env")
def test_open_store_picks_the_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s3 = open_store("s3://my-bucket/runs/2024/")
    assert isinstance(s3, S3Store)
    assert s3.url == "s3://my-bucket/runs/2024"
    assert open_store("s3://my-bucket").url == "s3://my-bucket"
    local = open_store("~/assets")
    assert isinstance(local, LocalStore)
    assert local.url == str(tmp_path / "assets")
    assert open_store(tmp_path / "x").url == str(tmp_path / "x")


@pytest.mark.s3
@pytest.mark.usefixtures("aws_env")
def test_s3_server_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    # A server of its own: stopping the shared one would break every other S3 test.
    ports = free_ports()
    server_dir = tmp_path / "seaweedfs"
    with running_seaweedfs(server_dir, ports) as server:
        bucket = server.make_bucket()
        store = S3Store(bucket, endpoint_url=server.endpoint_url, max_attempts=2)
        store.put("before", b"written before the outage")
    with pytest.raises(StoreUnavailable, match=re.escape(server.endpoint_url)) as raised:
        store.put("during", b"x")
    assert "rerun" in str(raised.value)
    with running_seaweedfs(server_dir, ports) as again:
        assert again.endpoint_url == server.endpoint_url
        assert again.pid != server.pid
        store = S3Store(bucket, endpoint_url=again.endpoint_url, max_attempts=2)
        store.put("during", b"written after the restart")
        assert store.get("before") == b"written before the outage"
        assert store.get("during") == b"written after the restart"
    assert not os.path.exists(f"/tmp/seaweedfs-s3-grpc-{ports['s3.port.grpc']}.sock")


def test_released_leases_and_deleted_keys_leave_no_empty_folders(tmp_path: Path) -> None:
    from storage.cache import SegmentCache

    root = tmp_path / "store"
    store = LocalStore(root)
    store.put("keep/me", b"x")
    cache = SegmentCache(store)
    for key in ("a" * 64, "b" * 64):
        with cache.single_flight("render", key) as found:
            assert found is None
            assert list(store.list("cache/leases/render/"))
    assert not (root / "cache").exists()
    store.delete("keep/me")
    assert not (root / "keep").exists()
    assert root.is_dir()


def test_writers_racing_a_pruning_delete_never_fail(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path / "store")

    def churn(worker: int) -> None:
        for round_ in range(200):
            key = f"deep/shared/dir/{worker}-{round_}"
            store.put(key, b"x")
            assert store.get(key) == b"x"
            store.delete(key)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(churn, range(4)))
    assert list(store.list()) == []
