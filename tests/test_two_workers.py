"""Two workers, one store: a second host joins the factory and reuses what the first rendered.

A real Prefect server (the session's, SQLite on 127.0.0.1), the deployments registered with
the README's commands, one process work pool and two workers (`deployments/worker.py`), each
with its own FACTORY_HOME and FACTORY_WORKER_NAME, both on the same SeaweedFS bucket and the
same signing identity (one keys directory, made once and handed to both, as a fleet does).
Two orders that share segments go in through plain HTTP, one per worker (a work queue each);
the second reuses the first's segments, both deliverables verify, both results are read
back through the API. Every process is stopped by its PID.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml

from factory.assets import Delivery
from storage import keys
from storage.floor_events import EVENTS_PREFIX, parse_events
from storage.open import open_store
from storage.trust import load_trusted_keys, resolve_anchor
from storage.verification import verify
from tests.deploying import (
    BIN,
    REPO,
    base_env,
    call_api,
    deploy_commands,
    run_commands,
    start,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.s3]

WORKERS = ("w1", "w2")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _worker_env(name: str, factory_home: Path, keys_dir: Path, tmp_path: Path, s3_env, store):
    home = tmp_path / name
    home.mkdir()
    # The tiny model is built once per session; the identity is the fleet's, shared.
    (home / "models").symlink_to(factory_home / "models")
    (home / "keys").symlink_to(keys_dir)
    return base_env(
        home,
        FACTORY_STORE=store,
        FACTORY_WORKER_NAME=name,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        **s3_env.env(),
    )


def _submit(deployment_id: str, order: dict, queue: str) -> str:
    response = call_api(
        "POST",
        f"/deployments/{deployment_id}/create_flow_run",
        json={"parameters": {"order": order, "floor": False}, "work_queue_name": queue},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _finished(run_id: str) -> dict | None:
    run = call_api("GET", f"/flow_runs/{run_id}").json()
    return run if run["state_type"] in FINAL_STATES else None


def _delivery(run: dict, store) -> Delivery:
    """The run's result as a service reads it: the storage key from the API, the JSON from
    the store."""
    key = run["state"]["data"]["storage_key"]
    return Delivery.model_validate(json.loads(store.get(f"results/{key}"))["data"])


def _events(store, run_id: str) -> list:
    prefix = f"{EVENTS_PREFIX}{run_id}/"
    return [event for key in store.list(prefix) for event in parse_events(store.get(key), key)]


def test_two_workers_on_one_store_share_the_cache(factory_home, prefect_server, s3_env, tmp_path):
    store_url = f"s3://{s3_env.make_bucket()}/factory"
    keys_dir = tmp_path / "fleet-keys"
    keys.init(keys_dir)
    envs = {
        name: _worker_env(name, factory_home, keys_dir, tmp_path, s3_env, store_url)
        for name in WORKERS
    }
    prefect = str(BIN / "prefect")
    run_commands(
        [
            *deploy_commands("produce-cpu"),
            *([prefect, "work-queue", "create", name, "--pool", "factory-cpu"] for name in WORKERS),
        ],
        envs["w1"],
    )
    [put] = run_commands([[str(BIN / "factory"), "assets", "put", "examples/logo.png"]], envs["w1"])
    logo = put.strip().splitlines()[-1]
    assert logo.startswith("sha256:"), put

    workers = {}
    try:
        for name in WORKERS:
            log = tmp_path / f"{name}.log"
            command = [sys.executable, "deployments/worker.py", "--pool", "factory-cpu",
                       "--work-queue", name, "--name", name]  # fmt: skip
            workers[name] = (start(command, envs[name], log), log)
        deployment = call_api("GET", "/deployments/name/produce/produce-cpu").json()
        first = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
        first["composite"]["logo"] = logo
        # The same two segments, one caption changed: both renders and all of segment 0
        # are the first order's, segment 1's composite and encode are new.
        second = {**first, "id": "tiny-again"}
        second["composite"] = {**first["composite"], "captions": ["first", "second, again"]}

        runs = {}
        for name, order in zip(WORKERS, (first, second), strict=True):
            run_id = _submit(deployment["id"], order, name)
            runs[name] = wait_for(
                lambda run_id=run_id: _finished(run_id), f"{order['id']} on {name}", 400,
                log=workers[name][1],
            )  # fmt: skip
            assert runs[name]["state_type"] == "COMPLETED", runs[name]["state"]["message"]
    finally:
        stop_times = {name: stop(process) for name, (process, _) in workers.items()}

    assert all(took < 15 for took in stop_times.values()), stop_times
    store = open_store(store_url)
    deliveries = {name: _delivery(run, store) for name, run in runs.items()}
    assert {d.order_id for d in deliveries.values()} == {"tiny", "tiny-again"}
    assert all(d.verified for d in deliveries.values()), [d.problems for d in deliveries.values()]
    # Verified again here, under the fleet's root, from the bucket alone.
    trusted = load_trusted_keys(store, resolve_anchor(None, keys_dir))
    for delivery in deliveries.values():
        assert verify(store, trusted, digest=delivery.deliverable.digest).verified

    reused = {(r.stage, r.segment_index) for r in deliveries["w2"].runs if r.cache_hit}
    assert {("render", 0), ("render", 1), ("composite", 0), ("encode", 0)} <= reused
    assert ("composite", 1) not in reused and ("encode", 1) not in reused
    assert not any(r.cache_hit for r in deliveries["w1"].runs)
    for name, run in runs.items():
        assert run["work_queue_name"] == name
        events = _events(store, run["id"])
        assert events and {e.worker_id.rpartition(":")[2] for e in events} == {name}
    assert any(e.status == "cache_hit" for e in _events(store, runs["w2"]["id"]))
