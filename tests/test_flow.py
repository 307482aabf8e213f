"""The tiny order end to end through the real Prefect flow, on the local store and on S3."""

import os
import signal
import time
from pathlib import Path

import av
import numpy as np
import pytest

from factory.assets import sha256_hex
from factory.errors import StoreError, StoreUnavailable
from factory.orders import load_order
from flows.produce import produce
from media.video import decode_frames, probe
from storage.assets import get_asset
from storage.local import LocalStore
from storage.open import open_store
from storage.s3 import S3Store
from tasks import progress
from tests.run_index import run_records
from tests.s3server import free_ports, running_seaweedfs
from tests.task_runs import task_runs as read_task_runs

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int) -> None:
    for _ in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        except ChildProcessError:
            return
        time.sleep(0.05)


def test_tiny_order_becomes_an_h264_deliverable(flow_env, tmp_path):
    order = load_order(EXAMPLES / "tiny.yaml")
    state = produce(order, str(tmp_path / "store"), return_state=True)
    delivery = state.result()

    data = get_asset(LocalStore(tmp_path / "store"), delivery.deliverable)
    info = probe(data)
    assert (info.codec, info.width, info.height, info.pix_fmt) == ("h264", 160, 96, "yuv420p")
    assert info.frames == 16
    assert info.duration_s == pytest.approx(2.0, abs=1e-6)
    assert delivery.duration_s == pytest.approx(2.0)
    with av.open(str(Path(delivery.deliverable.uri.removeprefix("file://")))) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16

    stages = sorted(run.stage for run in delivery.runs)
    assert stages == (
        ["assemble"] + ["composite"] * 2 + ["encode"] * 2 + ["gate"] * 2 + ["render"] * 2
    )
    # Every segment accepted on its first take; the deliverable and the run's lineage
    # passed their suites.
    assert [verdict.attempt for verdict in delivery.segment_verdicts] == [1, 1]
    assert all(verdict.passed for verdict in delivery.segment_verdicts)
    assert delivery.deliverable_verdict.passed and delivery.lineage_verdict.passed
    # Data Docs of the run's validations (the round's two segments in one, the deliverable,
    # the lineage).
    docs = Path(delivery.qc_docs)
    assert docs.name == "index.html" and docs.parent.name == delivery.flow_run_id
    pages = list(docs.parent.glob("validations/**/*.html"))
    assert len(pages) == 3
    assert all(run.device_seconds > 0 for run in delivery.runs)
    assert all(run.device_seconds <= run.wall_seconds for run in delivery.runs)
    assert {run.device_class for run in delivery.runs} == {"cpu"}

    # Every stored asset (the stage outputs and the logo) has its own lineage record, the
    # run indexes each record, every stage run left a cache entry and a floor event, and
    # nothing was stored twice.
    store = LocalStore(tmp_path / "store")
    logo_digest = sha256_hex(Path(order.composite.logo).read_bytes())
    assets = {key.rsplit("/", 1)[1] for key in store.list("assets/sha256/")}
    assert assets == {run.output_digest for run in delivery.runs} | {logo_digest}
    recorded = {key.rsplit("/", 1)[1].removesuffix(".dsse.json") for key in store.list("lineage/")}
    assert assets <= recorded
    assert {asset for asset, _ in run_records(store, delivery.flow_run_id)} == assets
    assert len(list(store.list("cache/entries/"))) == len(delivery.runs)
    assert len(list(store.list("floor/events/"))) == len(delivery.runs)

    task_runs = read_task_runs(state.state_details.flow_run_id)
    names = sorted(run.name for run in task_runs)
    chain = ("render", "composite", "encode", "gate")
    assert {name for name in names if name.startswith(tuple(f"{s}-" for s in chain))} == {
        f"{stage}-{index}" for stage in chain for index in (0, 1)
    }
    assert len(task_runs) == 10
    assert sum(name.startswith("reuse") for name in names) == 1
    assert sum(name.startswith("assemble") for name in names) == 1
    assert all(run.state.is_completed() for run in task_runs)


def test_same_order_twice_decodes_to_the_same_frames(flow_env, tmp_path):
    # The bytes differ (each C2PA manifest has its own instance ids and signature),
    # the pictures must not.
    order = load_order(EXAMPLES / "tiny.yaml")
    first = produce(order, str(tmp_path / "a"))
    second = produce(order, str(tmp_path / "b"))
    assert first.deliverable.digest != second.deliverable.digest
    frames = [
        decode_frames(get_asset(LocalStore(tmp_path / name), delivery.deliverable))
        for name, delivery in (("a", first), ("b", second))
    ]
    assert np.array_equal(*frames)


@pytest.mark.s3
def test_tiny_order_on_s3(flow_env, s3_env):
    bucket = s3_env.make_bucket()
    delivery = produce(load_order(EXAMPLES / "tiny.yaml"), f"s3://{bucket}/factory")
    assert delivery.deliverable.uri.startswith(f"s3://{bucket}/factory/assets/sha256/")
    info = probe(get_asset(open_store(f"s3://{bucket}/factory"), delivery.deliverable))
    assert (info.codec, info.frames) == ("h264", 16)


def _wait_until_readable(store: S3Store) -> None:
    """A restarted SeaweedFS answers InternalError until its volumes are loaded again."""
    key = next(iter(store.list("keys/")))
    deadline = time.monotonic() + 60
    while True:
        try:
            store.get(key)
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.s3
def test_s3_server_lost_mid_run_then_rerun_completes(flow_env, aws_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    order = load_order(EXAMPLES / "tiny.yaml")
    ports = free_ports()
    with running_seaweedfs(tmp_path / "weed", ports=ports) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        bucket = server.make_bucket()

        def stop_after_first_render(stage, index, event):
            if (stage, event) == ("render", "finished") and _alive(server.pid):
                os.kill(server.pid, signal.SIGTERM)
                _wait_dead(server.pid)

        with progress.listening(stop_after_first_render), pytest.raises(StoreUnavailable) as lost:
            produce(order, f"s3://{bucket}/p")
    assert server.endpoint_url in str(lost.value)

    with running_seaweedfs(tmp_path / "weed", ports=ports) as server:
        _wait_until_readable(S3Store(bucket, "p", endpoint_url=server.endpoint_url))
        delivery = produce(order, f"s3://{bucket}/p")
        info = probe(get_asset(open_store(f"s3://{bucket}/p"), delivery.deliverable))
        assert info.frames == 16
