"""Deployments that behave: schedules that outlive restarts and re-deploys, prefect.yaml deployed
by the documented commands, and a worker that stops on one SIGTERM."""

import re
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client

from factory.assets import sha256_hex
from tests.deploying import (
    REPO,
    base_env,
    call_api,
    deploy_commands,
    run_commands,
    start,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


def _order() -> dict:
    """examples/tiny.yaml as an API caller sends it: the logo by digest."""
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    order["composite"]["logo"] = f"sha256:{sha256_hex((EXAMPLES / 'logo.png').read_bytes())}"
    return order


def _schedules(name: str) -> list[dict]:
    """A deployment's schedules as the REST API returns them ([] while it does not exist)."""
    response = call_api("GET", f"/deployments/name/{name}")
    return response.json()["schedules"] if response.status_code == 200 else []


def _add_as_the_ui_does(name: str, schedule: dict, parameters: dict) -> None:
    """POST a schedule the way the Prefect UI does: no slug."""
    deployment = call_api("GET", f"/deployments/name/{name}").json()
    response = call_api(
        "POST",
        f"/deployments/{deployment['id']}/schedules",
        json=[{"schedule": schedule, "active": True, "parameters": parameters, "slug": None}],
    )
    assert response.status_code == 201, response.text


def _by_cron(schedules: list[dict]) -> dict[str, dict]:
    return {s["schedule"].get("cron") or str(s["schedule"].get("interval")): s for s in schedules}


def test_schedules_from_the_ui_and_from_code_survive_a_restart_of_serve(flow_env, tmp_path):
    env = base_env(flow_env)
    log = tmp_path / "serve.log"
    serve = start([sys.executable, "deployments/serve.py"], env, log)
    try:
        wait_for(lambda: _schedules("floor-report/floor-report-local"), "serve.py", log=log)
        wait_for(lambda: _schedules("cache-gc/cache-gc-local"), "the cache-gc schedule", log=log)
        _add_as_the_ui_does("produce/produce-local", {"cron": "30 1 * * *"}, {"order": _order()})
        # Prefect accepts this one although `order` is required: its runs would fail.
        _add_as_the_ui_does("produce/produce-local", {"cron": "45 1 * * *"}, {})
        _add_as_the_ui_does("floor-report/floor-report-local", {"interval": 3600}, {})
    finally:
        stop(serve)

    serve = start([sys.executable, "deployments/serve.py"], env, log)
    try:
        wait_for(lambda: "switched off schedule" in log.read_text(), "the second start", log=log)
        produce = _by_cron(_schedules("produce/produce-local"))
        assert set(produce) == {"30 1 * * *", "45 1 * * *"}
        assert produce["30 1 * * *"]["active"] is True
        assert produce["30 1 * * *"]["parameters"]["order"]["id"] == "tiny"
        assert produce["45 1 * * *"]["active"] is False
        assert "switched off schedule '45 1 * * *'" in log.read_text()
        assert "would be refused (order: missing)" in log.read_text()
        floor = _schedules("floor-report/floor-report-local")
        # The code-defined schedule once (not re-added), the UI's one kept.
        assert sorted(str(s["slug"]) for s in floor) == ["None", "nightly-floor-report"]
        assert {s["schedule"].get("cron") for s in floor} == {"0 2 * * *", None}
        [gc] = _schedules("cache-gc/cache-gc-local")
        assert gc["slug"] == "cache-gc-every-6h" and gc["schedule"]["interval"] == 21600.0
        with get_client(sync_client=True) as client:
            served = client.read_deployment_by_name("produce/produce-local")
        assert served.entrypoint == "deployments/entrypoints.py:produce"
    finally:
        stop(serve)


def test_prefect_yaml_deploys_with_the_documented_commands_and_keeps_schedules(
    factory_home, prefect_server
):
    env = base_env(factory_home)
    run_commands(deploy_commands(), env)
    names = ("produce/produce-cpu", "produce/produce-gpu", "floor-report/floor-report",
             "cache-gc/cache-gc")  # fmt: skip
    with get_client(sync_client=True) as client:
        deployments = {name: client.read_deployment_by_name(name) for name in names}
    for deployment in deployments.values():
        # No variable to set on the worker: the directory `prefect deploy` ran in.
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
    assert deployments["produce/produce-gpu"].work_pool_name == "factory-gpu"
    _add_as_the_ui_does("floor-report/floor-report", {"cron": "15 3 * * *"}, {})
    _add_as_the_ui_does("produce/produce-cpu", {"cron": "0 4 * * *"}, {"order": _order()})

    run_commands(deploy_commands(), env)  # a re-deploy, as after a code change

    floor = _by_cron(_schedules("floor-report/floor-report"))
    assert set(floor) == {"0 2 * * *", "15 3 * * *"}
    assert floor["0 2 * * *"]["slug"] == "nightly-floor-report"
    [produce] = _schedules("produce/produce-cpu")
    assert produce["active"] is True and produce["parameters"]["order"]["id"] == "tiny"
    assert [s["slug"] for s in _schedules("cache-gc/cache-gc")] == ["cache-gc-every-6h"]


def test_one_sigterm_stops_the_worker_within_seconds(factory_home, prefect_server, tmp_path):
    env = base_env(factory_home)
    prefect = str(Path(sys.executable).parent / "prefect")
    run_commands(
        [[prefect, "work-pool", "create", "sigterm-test", "--type", "process", "--overwrite"]], env
    )
    log = tmp_path / "worker.log"
    worker = start([sys.executable, "deployments/worker.py", "--pool", "sigterm-test"], env, log)
    wait_for(lambda: "started!" in log.read_text(), "the worker to start", log=log)

    took = stop(worker, timeout_s=60)

    assert worker.returncode == 0, log.read_text()
    assert took < 10, f"the worker took {took:.1f} s to stop"
    [child] = re.findall(r"stopping the worker \(pid (\d+)\)", log.read_text())
    assert not Path(f"/proc/{child}").exists(), "prefect's worker process outlived the wrapper"
