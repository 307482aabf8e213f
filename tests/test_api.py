"""What a service sees through Prefect's API: results it can read, bad orders refused at
submission with every problem the schema can express."""

import json
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL

from factory.assets import Delivery, sha256_hex
from factory.orders import load_order
from factory.settings import StoreTimeouts
from flows.produce import for_store
from storage.local import LocalStore
from tasks.delivery import artifact_key

EXAMPLES = Path(__file__).parent.parent / "examples"
LOGO = EXAMPLES / "logo.png"


@pytest.mark.slow
def test_the_result_is_persisted_in_the_store_and_readable_back(flow_env, tmp_path):
    store = tmp_path / "store"
    order = load_order(EXAMPLES / "tiny.yaml")
    state = for_store(str(store), 1, StoreTimeouts())(
        order, str(store), floor=False, return_state=True
    )
    run_id = state.state_details.flow_run_id

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    # Read back as another process would: through the API's state, from the store.
    delivery = run.state.result()
    assert isinstance(delivery, Delivery)
    assert delivery.verified is True and delivery.verdict == "VERIFIED"
    assert delivery.cost is not None and delivery.cost > 0
    key = run.state.data.storage_key
    record = json.loads(LocalStore(store).get(f"results/{key}"))
    assert record["data"]["deliverable"]["digest"] == delivery.deliverable.digest

    [artifact] = [a for a in artifacts if a.key == artifact_key("tiny")]
    for fragment in (
        f"sha256:{delivery.deliverable.digest}",
        delivery.deliverable.uri,
        "VERIFIED",
        "USD",
    ):
        assert fragment in artifact.data


@pytest.fixture(scope="module")
def deployment_id(prefect_server) -> str:
    from flows.produce import produce

    deployment = produce.to_deployment(name="api-test")
    return str(deployment.apply())


def _create(deployment_id: str, parameters: dict) -> httpx.Response:
    url = f"{PREFECT_API_URL.value()}/deployments/{deployment_id}/create_flow_run"
    return httpx.post(url, json={"parameters": parameters}, timeout=60)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"width": 641}, "641 is not a multiple of 2"),
        ({"duration_s": 90}, "90 is greater than the maximum of 60"),
    ],
)
def test_bad_orders_are_refused_when_the_run_is_created(deployment_id, change, fragment):
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    order["composite"]["logo"] = f"sha256:{sha256_hex(LOGO.read_bytes())}"
    order["segments"][0].update(change)
    response = _create(deployment_id, {"order": order})
    assert response.status_code == 409, response.text
    assert fragment in response.json()["detail"]


def test_a_relative_image_path_is_refused_when_the_run_is_created(deployment_id):
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())  # logo: logo.png
    response = _create(deployment_id, {"order": order})
    assert response.status_code == 409, response.text
    assert "composite.logo" in response.json()["detail"]
