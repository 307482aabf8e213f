"""`factory runs list|show` and `factory submit` against a Prefect test server."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from cli import main as cli
from tests.test_cli import run_cli

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_json(monkeypatch, capsys, *args: str):
    monkeypatch.setattr(sys, "argv", ["factory", *args, "--json"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.out + captured.err
    return json.loads(captured.out)


@pytest.fixture
def env(flow_env, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    return flow_env


@pytest.fixture(scope="module")
def deployment(prefect_server) -> str:
    from flows.produce import produce

    produce.to_deployment(name="runs-cli-test").apply()
    return "runs-cli-test"


def _flow_run_count() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


@pytest.mark.slow
def test_a_produced_run_is_listed_and_shown_with_its_delivery(env, tmp_path, monkeypatch, capsys):
    from factory.orders import load_order
    from factory.settings import StoreTimeouts
    from flows.produce import for_store

    store = tmp_path / "store"
    order = load_order(EXAMPLES / "tiny.yaml")
    delivery = for_store(str(store), 1, StoreTimeouts())(order, str(store), floor=False)
    digest = f"sha256:{delivery.deliverable.digest}"

    rows = run_json(monkeypatch, capsys, "runs", "list", "--state", "completed")
    [row] = [r for r in rows if r["id"] == delivery.flow_run_id]
    assert row["order_id"] == "tiny" and row["state"] == "COMPLETED"
    assert row["digest"] == digest and row["verdict"] == "VERIFIED"
    assert row["cost"] > 0

    shown = run_json(monkeypatch, capsys, "runs", "show", delivery.flow_run_id)
    assert shown["delivery"]["deliverable"]["digest"] == delivery.deliverable.digest
    assert shown["delivery"]["verified"] is True
    assert shown["parameters"] == {
        "order_id": "tiny",
        "segments": len(order.segments),
        "store": str(store),
        "cache": "use",
    }
    assert digest in shown["artifact"]
    assert shown["task_runs"] and all(name == "Completed" for name in shown["task_runs"])

    code, text = run_cli(monkeypatch, capsys, "runs", "show", delivery.flow_run_id)
    assert code == 0 and digest in text and "VERIFIED" in text


def test_an_unknown_run_id_is_a_clear_error(env, monkeypatch, capsys):
    missing = str(uuid.uuid4())
    code, text = run_cli(monkeypatch, capsys, "runs", "show", missing)
    assert code == 1
    assert f"no flow run {missing}" in text and "factory runs list" in text
    code, text = run_cli(monkeypatch, capsys, "runs", "show", "not-a-run")
    assert code == 2 and "is not a flow run id" in text


def test_a_bad_state_filter_names_the_states(env, monkeypatch, capsys):
    code, text = run_cli(monkeypatch, capsys, "runs", "list", "--state", "done")
    assert code == 2 and "COMPLETED" in text


def test_a_bad_order_is_refused_before_anything_is_submitted(
    env, deployment, tmp_path, monkeypatch, capsys
):
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    order["composite"]["logo"] = str(EXAMPLES / "logo.png")
    order["segments"][0]["width"] = 641
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(order))
    before = _flow_run_count()
    code, text = run_cli(monkeypatch, capsys, "submit", str(path), "--deployment", deployment)
    assert code == 2 and "width" in text
    assert _flow_run_count() == before


def test_a_missing_deployment_names_the_ones_that_exist(env, deployment, monkeypatch, capsys):
    order = str(EXAMPLES / "tiny.yaml")
    code, text = run_cli(monkeypatch, capsys, "submit", order, "--deployment", "nope")
    assert code == 2
    assert "no deployment produce/nope" in text and f"produce/{deployment}" in text


def test_submitting_twice_with_one_idempotency_key_creates_one_run(
    env, deployment, monkeypatch, capsys
):
    order = str(EXAMPLES / "tiny.yaml")
    key = f"runs-cli-{uuid.uuid4()}"
    args = ("submit", order, "--deployment", deployment, "--idempotency-key", key)
    first = run_json(monkeypatch, capsys, *args)
    second = run_json(monkeypatch, capsys, *args)
    assert first["id"] == second["id"]
    assert first["deployment"] == f"produce/{deployment}"
    listed = run_json(monkeypatch, capsys, "runs", "list", "--state", "scheduled")
    assert [r["id"] for r in listed].count(first["id"]) == 1
    assert next(r for r in listed if r["id"] == first["id"])["order_id"] == "tiny"


def _scheduled_run_with_key(key: str, deadline: float) -> str:
    from prefect.client.orchestration import get_client

    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            for run in client.read_flow_runs(limit=200):
                if run.idempotency_key == key:
                    return str(run.id)
        time.sleep(0.5)
    raise AssertionError(f"no flow run with idempotency key {key} appeared")


@pytest.mark.slow
def test_submit_wait_returns_the_delivery_once_the_run_has_executed(env, deployment, tmp_path):
    """`submit --wait` as a service would use it: a separate process submits and waits while
    a worker (here `prefect flow-run execute`, what a process worker runs) executes the run."""
    from prefect.settings import PREFECT_API_URL

    repo = Path(__file__).parent.parent
    environ = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "FACTORY_HOME": str(env),
        "FACTORY_LOCAL_SERVER": "false",
    }
    factory = Path(sys.executable).parent / "factory"
    key = f"submit-wait-{uuid.uuid4()}"
    store = tmp_path / "store"
    waiting = subprocess.Popen(
        [str(factory), "submit", str(EXAMPLES / "tiny.yaml"), "--deployment", deployment,
         "--idempotency-key", key, "--store", str(store), "--wait", "--json"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_id = _scheduled_run_with_key(key, time.monotonic() + 120)
        assert waiting.poll() is None, "submit --wait returned before the run had executed"
        executed = subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), "flow-run", "execute", run_id],
            env=environ, cwd=repo, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert executed.returncode == 0, executed.stdout[-3000:] + executed.stderr[-3000:]
        out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, out + err
    shown = json.loads(out)
    assert shown["id"] == run_id and shown["state"] == "COMPLETED"
    assert shown["delivery"]["verified"] is True
    assert shown["delivery"]["store"] == str(store)
    assert shown["delivery"]["deliverable"]["uri"].startswith(store.as_uri())
