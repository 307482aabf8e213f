"""The segment cache: nothing rendered twice, partial edits, single-flight, repair, crash."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from factory.assets import sha256_hex
from factory.errors import StoreUnavailable
from factory.orders import parse_order
from flows.produce import produce
from storage.assets import put_asset
from storage.cache import CacheEntry, SegmentCache, cache_key, lease_key
from storage.floor_events import list_event_keys, parse_events
from storage.lineage import RecordStore
from storage.local import LocalStore
from storage.verification import verify
from tests.run_index import run_records, run_reuses
from tests.task_runs import task_runs
from tests.trusted import local_trust

EXAMPLES = Path(__file__).parent.parent / "examples"


def _order(changes: dict | None = None):
    data = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    data["composite"]["logo"] = str(EXAMPLES / "logo.png")
    for (index, field), value in (changes or {}).items():
        if field == "caption":
            data["composite"]["captions"][index] = value
        else:
            data["segments"][index][field] = value
    return parse_order(data)


def _computed(delivery, stage: str) -> list[int | None]:
    return sorted(
        run.segment_index for run in delivery.runs if run.stage == stage and not run.cache_hit
    )


@pytest.mark.slow
def test_warm_run_renders_nothing_and_writes_the_same_deliverable(flow_env, tmp_path):
    store = str(tmp_path / "store")
    cold = produce(_order(), store)
    warm_state = produce(_order(), store, return_state=True)
    warm = warm_state.result()
    assert all(not run.cache_hit for run in cold.runs)
    assert all(run.cache_hit for run in warm.runs)
    assert all(run.device_seconds == 0 for run in warm.runs)
    assert warm.deliverable.digest == cold.deliverable.digest
    stored = LocalStore(tmp_path / "store")
    assert len(run_reuses(stored, warm.flow_run_id)) == len(warm.runs)
    assert run_records(stored, warm.flow_run_id) == []
    assert verify(stored, local_trust(stored), digest=warm.deliverable.digest).verified
    # Every hit was resolved in one task run: no stage task ran at all.
    warm_task_runs = task_runs(warm_state.state_details.flow_run_id)
    assert [run.name.split("-")[0] for run in warm_task_runs] == ["reuse"]
    # Looked up on worker threads, the hits still name the reuse task run that made them.
    reuse_run = next(str(run.id) for run in warm_task_runs if run.name.startswith("reuse"))
    store_ = LocalStore(tmp_path / "store")
    events = [
        event
        for key in list_event_keys(store_, warm.flow_run_id)
        for event in parse_events(store_.get(key))
    ]
    assert len(events) == len(warm.runs)
    assert {(event.status, event.task_run_id) for event in events} == {("cache_hit", reuse_run)}


@pytest.mark.slow
def test_caption_edit_recomposites_one_segment_and_reuses_its_render(flow_env, tmp_path):
    store = str(tmp_path / "store")
    produce(_order(), store)
    state = produce(_order({(1, "caption"): "a new caption"}), store, return_state=True)
    edited = state.result()
    assert _computed(edited, "render") == []
    assert _computed(edited, "composite") == [1]
    assert _computed(edited, "encode") == [1]
    assert _computed(edited, "gate") == [1]
    assert _computed(edited, "assemble") == [None]
    # Only those stages were scheduled as tasks; the reuse pass found the rest.
    names = [run.name for run in task_runs(state.state_details.flow_run_id)]
    segment_tasks = ("render-", "composite-", "encode-", "gate-")
    named = sorted(name if name.startswith(segment_tasks) else name.split("-")[0] for name in names)
    assert named == ["assemble", "composite-1", "encode-1", "gate-1", "reuse"]


@pytest.mark.slow
def test_cache_off_and_refresh_compute_everything_without_a_reuse_pass(flow_env, tmp_path):
    store = str(tmp_path / "store")
    produce(_order(), store)
    for mode in ("off", "refresh"):
        state = produce(_order(), store, cache=mode, return_state=True)
        delivery = state.result()
        assert not any(run.cache_hit for run in delivery.runs)
        names = {run.name.split("-")[0] for run in task_runs(state.state_details.flow_run_id)}
        assert "reuse" not in names and {"render", "composite", "encode"} <= names


@pytest.mark.slow
def test_seed_or_prompt_edit_renders_one_segment(flow_env, tmp_path):
    store = str(tmp_path / "store")
    produce(_order(), store)
    assert _computed(produce(_order({(0, "seed"): 99}), store), "render") == [0]
    assert _computed(produce(_order({(1, "prompt"): "a green star"}), store), "render") == [1]


@pytest.mark.slow
def test_two_concurrent_runs_render_each_segment_once(flow_env, tmp_path):
    store = str(tmp_path / "store")
    deliveries = []

    def run() -> None:
        deliveries.append(produce(_order(), store))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(deliveries) == 2
    renders = [run for d in deliveries for run in d.runs if run.stage == "render"]
    assert sorted(run.segment_index for run in renders if not run.cache_hit) == [0, 1]
    assert sum(run.cache_hit for run in renders) == 2
    assert deliveries[0].deliverable.digest == deliveries[1].deliverable.digest


@pytest.mark.slow
def test_corrupted_cached_render_is_rerendered_and_reported(flow_env, tmp_path):
    root = tmp_path / "store"
    first = produce(_order(), str(root))
    render = next(run for run in first.runs if run.stage == "render" and run.segment_index == 0)
    path = next(root.glob(f"assets/sha256/*/{render.output_digest}"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    second = produce(_order(), str(root))
    redone = [run for run in second.runs if run.stage == "render" and not run.cache_hit]
    assert [run.segment_index for run in redone] == [0]
    assert "is corrupted" in redone[0].cache_note
    local = LocalStore(root)
    assert verify(local, local_trust(local), digest=second.deliverable.digest).verified
    third = produce(_order(), str(root))
    assert all(run.cache_hit for run in third.runs)


def test_single_flight_computes_once_across_threads(tmp_path):
    store = LocalStore(tmp_path)
    cache = SegmentCache(store)
    computed, waited, inside = [], [], []
    lock = threading.Lock()
    most_at_once = 0

    def worker() -> None:
        nonlocal most_at_once
        with cache.single_flight("render", "k" * 64, poll_seconds=0.01) as entry:
            if entry is not None:
                waited.append(entry)
                return
            with lock:
                inside.append(1)
                most_at_once = max(most_at_once, len(inside))
            time.sleep(0.2)
            asset = put_asset(store, b"rendered once", "video/mp4")
            cache.put(
                CacheEntry(
                    stage="render",
                    key="k" * 64,
                    asset=asset,
                    record_digest="0" * 64,
                    device_class="cpu",
                    device_seconds=0.2,
                    created=datetime.now(UTC),
                ),
                replace=False,
            )
            computed.append(asset.digest)
            with lock:
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One thread computes; the three that waited on its lease take its entry.
    assert most_at_once == 1
    assert len(computed) == 1
    assert [entry.asset.digest for entry in waited] == computed * 3


def test_lease_of_a_dead_process_is_taken_over(tmp_path):
    store = LocalStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    import socket

    store.put(
        lease_key("render", "a" * 64),
        (
            f'{{"owner": "x", "host": "{socket.gethostname()}", "pid": {pid}, '
            f'"expires": {time.time() + 3600}}}'
        ).encode(),
    )
    cache = SegmentCache(store)
    start = time.perf_counter()
    with cache.single_flight("render", "a" * 64, poll_seconds=0.01) as entry:
        assert entry is None
    assert time.perf_counter() - start < 2


def test_cache_keys_are_canonical():
    assert cache_key({"b": 1, "a": [1, 2]}) == cache_key({"a": [1, 2], "b": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key({"a": 1}) == sha256_hex(b'{"a":1}')


@pytest.mark.slow
def test_run_killed_half_way_then_rerun_completes_and_reuses(factory_home, tmp_path):
    order = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    order["composite"]["logo"] = str(EXAMPLES / "logo.png")
    order["segments"] = [dict(s, duration_s=1) for s in order["segments"][:6]]
    order["composite"]["captions"] = order["composite"]["captions"][:6]
    (tmp_path / "order.yaml").write_text(yaml.safe_dump(order))
    store = tmp_path / "store"
    env = {**os.environ, "FACTORY_HOME": str(factory_home)}
    env.pop("PREFECT_API_URL", None)
    command = [str(Path(sys.executable).parent / "factory"), "run", "order.yaml",
               "--store", str(store), "--json"]  # fmt: skip
    # Its own process group, so the kill takes its Prefect server with it, as a crash of
    # the machine would (a lone SIGKILL leaves that server running, orphaned).
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if len(list(store.glob("cache/entries/encode/*/*.json"))) >= 2:
            break
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(store.glob("cache/entries/encode/*/*.json")))
    assert 2 <= finished < 6

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    delivery = json.loads(done.stdout)
    reused = [run for run in delivery["runs"] if run["stage"] == "encode" and run["cache_hit"]]
    assert len(reused) >= finished
    local = LocalStore(store)
    trusted = local_trust(local, factory_home / "keys")
    assert verify(local, trusted, digest=delivery["deliverable"]["digest"]).verified
    # Every producing record is one asset's only record, and every cache entry points at
    # an asset whose record exists: nothing lost, nothing written twice.
    records = RecordStore(local)
    for entry in SegmentCache(local).entries():
        assert records.exists(entry.asset.digest)
    for stage in ("render", "composite", "encode"):
        entries = list(SegmentCache(local).entries(stage))
        assert len({entry.key for entry in entries}) == len(entries) == 6


def test_lease_left_by_a_failed_attempt_in_this_process_is_taken_over(tmp_path):
    store = LocalStore(tmp_path)
    cache = SegmentCache(store)
    # An earlier attempt that died before it could release (its store went away).
    store.put(
        lease_key("render", "b" * 64),
        (
            f'{{"owner": "gone", "host": "{__import__("socket").gethostname()}", '
            f'"pid": {os.getpid()}, "expires": {time.time() + 3600}}}'
        ).encode(),
    )
    start = time.perf_counter()
    with cache.single_flight("render", "b" * 64, poll_seconds=0.01) as entry:
        assert entry is None
    assert time.perf_counter() - start < 2


def test_lease_whose_release_failed_is_taken_over_by_the_retry_at_once(tmp_path):
    # The store went away as the attempt ended, so its lease stayed behind: the task's
    # retry in this process must take it over, not wait 15 minutes for it to expire.
    class DeleteFailsOnce(LocalStore):
        failed = False

        def delete(self, key: str) -> None:
            if key.startswith("cache/leases/") and not DeleteFailsOnce.failed:
                DeleteFailsOnce.failed = True
                raise StoreUnavailable("the store stopped answering")
            super().delete(key)

    # A short expiry, so a regression fails the timing below instead of hanging.
    cache = SegmentCache(DeleteFailsOnce(tmp_path), lease_seconds=6)
    with (
        pytest.raises(StoreUnavailable),
        cache.single_flight("render", "d" * 64, poll_seconds=0.01) as entry,
    ):
        assert entry is None
    assert list(LocalStore(tmp_path).list("cache/leases/"))
    start = time.perf_counter()
    with cache.single_flight("render", "d" * 64, poll_seconds=0.01) as entry:
        assert entry is None
    assert time.perf_counter() - start < 2


def test_an_abandoned_lease_taken_over_meanwhile_is_not_deleted(tmp_path):
    # Two waiters judge the same lease abandoned; the first deletes it and puts its own.
    # The second must not then delete the first one's live lease, or both compute.
    where = lease_key("render", "c" * 64)
    host = __import__("socket").gethostname()
    abandoned = (
        f'{{"owner": "gone", "host": "{host}", "pid": {os.getpid()}, '
        f'"expires": {time.time() + 3600}}}'
    ).encode()
    live = abandoned.replace(b'"gone"', b'"other-waiter"').replace(
        f'"pid": {os.getpid()}'.encode(), f'"pid": {os.getppid()}'.encode()
    )

    class OtherWaiterStepsIn(LocalStore):
        def get(self, key: str) -> bytes:
            data = super().get(key)
            if key == where and data == abandoned:
                self.delete(where)
                self.put(where, live)
            return data

    store = OtherWaiterStepsIn(tmp_path)
    store.put(where, abandoned)
    assert SegmentCache(store)._cleared_if_abandoned(where)
    assert LocalStore(tmp_path).get(where) == live


@pytest.mark.s3
def test_single_flight_on_s3_computes_once_and_the_waiter_reuses(s3_env):
    from datetime import UTC, datetime

    from factory.assets import AssetRef
    from storage.assets import put_asset
    from storage.cache import CacheEntry
    from storage.s3 import S3Store

    store = S3Store(s3_env.make_bucket(), "cache-test")
    computed, reused = [], []

    def worker() -> None:
        cache = SegmentCache(store)
        with cache.single_flight("render", "c" * 64, poll_seconds=0.05) as entry:
            if entry is not None:
                reused.append(entry.asset.digest)
                return
            computed.append(1)
            time.sleep(0.5)
            asset: AssetRef = put_asset(store, b"rendered once", "video/mp4")
            cache.put(
                CacheEntry(
                    stage="render",
                    key="c" * 64,
                    asset=asset,
                    record_digest="0" * 64,
                    device_class="cpu",
                    device_seconds=0.5,
                    created=datetime.now(UTC),
                ),
                replace=False,
            )

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    assert len(reused) == 2
    assert store.head(lease_key("render", "c" * 64)) is None
