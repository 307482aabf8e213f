"""OpenLineage: a real produce run's events through the client's file transport, checked
against our schemas of the OpenLineage spec (tests/openlineage_spec) and the factory's facets'
own schemas; the schemas reject malformed events; failures send FAIL; an unreachable sink
never fails a run; unconfigured, nothing."""

import dataclasses
import json
import logging
import os
import re
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, ValidationError
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    parent_run,
    tags_job,
    tags_run,
)
from openlineage.client.serde import Serde
from referencing import Registry, Resource

from factory.orders import Order, Segment, load_order
from factory.registry import load_registry
from factory.settings import Settings
from flows.produce import produce
from media.weights import resolve_model
from storage.openlineage import FACET_SCHEMAS, PRODUCER
from storage.openlineage_config import DEFAULT_NAMESPACE, openlineage_settings
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.render import RENDER
from tasks.resources import open_openlineage, open_resources
from tasks.runner import run_stage
from tests.task_runs import task_runs

EXAMPLES = Path(__file__).parent.parent / "examples"
SPEC = Path(__file__).with_name("openlineage_spec")
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
COST, MODEL = "assetFactory_cost", "assetFactory_model"


def _schemas() -> Registry:
    found = [json.loads(p.read_text()) for p in (*SPEC.glob("*.json"), *FACET_SCHEMAS.glob("*"))]
    # Hand-written schemas: a malformed keyword would otherwise just validate less.
    for schema in found:
        Draft202012Validator.check_schema(schema)
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in found)


SCHEMAS = _schemas()


def _validate(schema_url: str, instance: dict) -> None:
    Draft202012Validator(
        {"$ref": schema_url}, registry=SCHEMAS, format_checker=Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


def validate_event(event: dict) -> None:
    """The event against the spec's RunEvent, and every facet against its own _schemaURL."""
    _validate(RUN_EVENT, event)
    for facets in (event["run"].get("facets", {}), event["job"].get("facets", {})):
        for facet in facets.values():
            _validate(facet["_schemaURL"], facet)


def a_failed_stage_event() -> dict:
    """A FAIL event of a stage run, built and serialised by the client itself, carrying every
    spec facet our schemas describe."""
    flow = parent_run.Job(namespace=DEFAULT_NAMESPACE, name="produce")
    flow_run = str(uuid.uuid4())
    run_facets = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=flow_run),
            job=flow,
            root=parent_run.Root(
                run=parent_run.RootRun(runId=flow_run),
                job=parent_run.RootJob(namespace=flow.namespace, name=flow.name),
            ),
            producer=PRODUCER,
        ),
        "errorMessage": error_message_run.ErrorMessageRunFacet(
            message="RuntimeError: the render device fell over",
            programmingLanguage="python",
            producer=PRODUCER,
        ),
        "tags": tags_run.TagsRunFacet(
            tags=[tags_run.TagsRunFacetFields("order", "tiny", "USER")], producer=PRODUCER
        ),
    }
    job_facets = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="ASSET_FACTORY", jobType="TASK", producer=PRODUCER
        ),
        "tags": tags_job.TagsJobFacet(
            tags=[tags_job.TagsJobFacetFields("stage", "render")], producer=PRODUCER
        ),
    }
    event = RunEvent(
        eventType=RunState.FAIL,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4()), facets=run_facets),
        job=Job(namespace=DEFAULT_NAMESPACE, name="produce.render", facets=job_facets),
        inputs=[InputDataset(namespace="file:///store", name="renders/abc")],
        producer=PRODUCER,
    )
    return json.loads(Serde.to_json(event))


def _drop(*path: str | int) -> Callable[[dict], None]:
    def change(event: dict) -> None:
        *parents, last = path
        for key in parents:
            event = event[key]
        del event[last]

    return change


def _set(value: object, *path: str | int) -> Callable[[dict], None]:
    def change(event: dict) -> None:
        *parents, last = path
        for key in parents:
            event = event[key]
        event[last] = value

    return change


def test_the_clients_own_event_with_every_spec_facet_is_valid():
    event = a_failed_stage_event()
    assert set(event["run"]["facets"]) == {"parent", "errorMessage", "tags"}
    assert "root" in event["run"]["facets"]["parent"]
    assert set(event["job"]["facets"]) == {"jobType", "tags"}
    validate_event(event)


@pytest.mark.parametrize(
    ("break_it", "why"),
    [
        pytest.param(_drop("run", "runId"), "'runId' is a required", id="no-runId"),
        pytest.param(_set("run-42", "run", "runId"), "is not a 'uuid'", id="runId-not-a-uuid"),
        pytest.param(
            _set("FINISHED", "eventType"), "'FINISHED' is not one of", id="unknown-eventType"
        ),
        pytest.param(
            _set("yesterday", "eventTime"),
            "'yesterday'",  # a format error, or the pattern's where no checker is installed
            id="eventTime-not-a-date-time",
        ),
        pytest.param(
            _set("asset factory", "producer"),
            "'asset factory' does not match",
            id="producer-not-a-uri",
        ),
        pytest.param(_drop("schemaURL"), "'schemaURL' is a required", id="no-schemaURL"),
        pytest.param(_drop("job", "name"), "'name' is a required", id="job-without-name"),
        pytest.param(
            _drop("inputs", 0, "namespace"),
            "'namespace' is a required",
            id="dataset-without-namespace",
        ),
        pytest.param(
            _drop("run", "facets", "parent", "_producer"),
            "'_producer' is a required",
            id="run-facet-no-producer",
        ),
        pytest.param(
            _drop("job", "facets", "jobType", "_producer"),
            "'_producer' is a required",
            id="job-facet-no-producer",
        ),
        pytest.param(
            _drop("run", "facets", "tags", "_schemaURL"),
            "'_schemaURL' is a required",
            id="facet-no-schemaURL",
        ),
        pytest.param(
            _drop("run", "facets", "parent", "job", "namespace"),
            "'namespace' is a required",
            id="parent-no-job",
        ),
        pytest.param(
            _set("7", "run", "facets", "parent", "root", "run", "runId"),
            "'7' is not a 'uuid'",
            id="bad-root",
        ),
        pytest.param(
            _drop("run", "facets", "errorMessage", "message"),
            "'message' is a required",
            id="error-no-message",
        ),
        pytest.param(
            _set("HOURLY", "job", "facets", "jobType", "processingType"),
            "'HOURLY' is not one of",
            id="bad-type",
        ),
        pytest.param(
            _drop("job", "facets", "tags", "tags", 0, "value"),
            "'value' is a required",
            id="tag-without-value",
        ),
    ],
)
def test_a_malformed_event_fails_validation(break_it, why):
    event = a_failed_stage_event()
    break_it(event)
    with pytest.raises(ValidationError, match=re.escape(why)):
        validate_event(event)


def lineage_env(monkeypatch: pytest.MonkeyPatch, events: Path) -> None:
    """The client's file transport, one JSON event per line, and no other OpenLineage setting."""
    for name in [name for name in os.environ if name.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(events))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_run(events: list[dict]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        runs[event["run"]["runId"]].append(event)
    return runs


def output_of(events: list[dict]) -> str:
    (output,) = events[-1]["outputs"]
    return output["name"]


def inputs_of(events: list[dict]) -> set[str]:
    return {item["name"] for item in events[-1]["inputs"]}


@pytest.fixture(scope="module")
def produced(prefect_server, factory_home, tmp_path_factory) -> Iterator[tuple]:
    """One real run of the tiny order with the file transport: (delivery, events, store)."""
    tmp = tmp_path_factory.mktemp("openlineage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACTORY_HOME", str(factory_home))
        patch.delenv("FACTORY_STORE", raising=False)
        patch.delenv("FACTORY_REGISTRY", raising=False)
        patch.chdir(tmp)
        lineage_env(patch, tmp / "events.jsonl")
        delivery = produce(load_order(EXAMPLES / "tiny.yaml"), str(tmp / "store"), floor=False)
        yield delivery, read_events(tmp / "events.jsonl"), tmp / "store"


@pytest.mark.slow
def test_every_flow_and_stage_run_starts_and_completes(produced):
    delivery, events, _ = produced
    for event in events:
        validate_event(event)
    runs = by_run(events)
    for run in runs.values():
        assert [e["eventType"] for e in run] == ["START", "COMPLETE"]
        assert {e["job"]["namespace"] for e in run} == {DEFAULT_NAMESPACE}
    jobs = sorted(run[0]["job"]["name"] for run in runs.values())
    assert jobs == ["produce", "produce.assemble"] + [
        f"produce.{stage}" for stage in ("composite", "encode", "gate", "render") for _ in range(2)
    ]
    # The flow run is the Prefect flow run; each stage run is its Prefect task run, under it.
    flow = runs[delivery.flow_run_id]
    assert flow[0]["job"]["name"] == "produce"
    stage_tasks = {str(run.id) for run in task_runs(delivery.flow_run_id)}
    for run_id, run in runs.items():
        if run_id == delivery.flow_run_id:
            continue
        assert run_id in stage_tasks
        parent = run[-1]["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == delivery.flow_run_id
        assert (parent["job"]["namespace"], parent["job"]["name"]) == (DEFAULT_NAMESPACE, "produce")


@pytest.mark.slow
def test_datasets_follow_the_lineage(produced):
    delivery, events, store = produced
    runs = by_run(events)
    stages: dict[str, list[list[dict]]] = defaultdict(list)
    for run in runs.values():
        stages[run[0]["job"]["name"]].append(run)
    namespaces = {d["namespace"] for e in events for d in (*e["inputs"], *e["outputs"])}
    assert namespaces == {store.absolute().as_uri()}

    # Each render's output is a composite's input, each composite's an encode's input, each
    # encode's a gate's, the gates' outputs are the assembly's inputs, whose output is the
    # flow's: the deliverable.
    renders = {output_of(run) for run in stages["produce.render"]}
    composites = {output_of(run): inputs_of(run) for run in stages["produce.composite"]}
    assert {name for inputs in composites.values() for name in inputs} >= renders
    assert all(len(inputs & renders) == 1 for inputs in composites.values())
    encodes = {output_of(run): inputs_of(run) for run in stages["produce.encode"]}
    assert sorted(name for inputs in encodes.values() for name in inputs) == sorted(composites)
    gates = {output_of(run): inputs_of(run) for run in stages["produce.gate"]}
    assert sorted(name for inputs in gates.values() for name in inputs) == sorted(encodes)
    (assemble,) = stages["produce.assemble"]
    assert inputs_of(assemble) == set(gates)
    assert output_of(assemble) == delivery.deliverable.key == output_of(runs[delivery.flow_run_id])
    # Names are store keys: namespace and name together are the asset's URI.
    assert store.absolute().as_uri() + "/" + output_of(assemble) == delivery.deliverable.uri
    # START already names the inputs.
    assert all(run[0]["inputs"] == run[-1]["inputs"] for run in runs.values())


@pytest.mark.slow
def test_facets_carry_cost_and_model(produced, factory_home):
    delivery, events, _ = produced
    runs = by_run(events)
    records = {run.output_digest: run for run in delivery.runs}
    model = resolve_model(load_registry().get("tiny"), factory_home / "models")
    for run_id, run in runs.items():
        facets = run[-1]["run"]["facets"]
        cost, models = facets[COST], facets[MODEL]["models"]
        assert [m["weightsFingerprint"] for m in models] == [model.fingerprint]
        assert models[0]["name"] == "tiny"
        assert models[0]["trainingProvenance"][0]["license"] == "Apache-2.0"
        assert cost["currency"] == "USD"
        if run_id == delivery.flow_run_id:
            assert cost["deviceSeconds"] == pytest.approx(delivery.device_seconds)
            assert cost["money"] == pytest.approx(delivery.cost)
            continue
        record = records[output_of(run).rsplit("/", 1)[1]]
        assert cost["deviceSeconds"] == pytest.approx(record.device_seconds)
        assert cost["deviceSeconds"] > 0
        assert cost["wallSeconds"] == pytest.approx(record.wall_seconds)
        assert (cost["deviceClass"], cost["cacheHit"]) == ("cpu", False)
        # The price card's CPU rate: 0.10 per device-hour.
        assert cost["money"] == pytest.approx(record.device_seconds / 3600 * 0.10)


@pytest.mark.slow
def test_a_failing_stage_and_its_flow_send_fail(flow_env, tmp_path, monkeypatch):
    lineage_env(monkeypatch, tmp_path / "events.jsonl")
    monkeypatch.chdir(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("the render device fell over")

    monkeypatch.setattr("media.pipelines.render_video", broken)
    state = produce(
        load_order(EXAMPLES / "tiny.yaml"), str(tmp_path / "store"), floor=False, return_state=True
    )
    assert state.is_failed()

    events = read_events(tmp_path / "events.jsonl")
    for event in events:
        validate_event(event)
    ends = {e["job"]["name"]: e for e in events if e["eventType"] != "START"}
    assert {e["eventType"] for e in ends.values()} == {"FAIL"}
    assert set(ends) == {"produce", "produce.render"}
    render = ends["produce.render"]["run"]["facets"]
    assert render["errorMessage"]["message"] == "RuntimeError: the render device fell over"
    assert render["errorMessage"]["programmingLanguage"] == "python"
    # A failed attempt costs its elapsed time, as on the floor.
    assert render[COST]["deviceSeconds"] > 0
    assert render[COST]["cacheHit"] is False
    assert "errorMessage" in ends["produce"]["run"]["facets"]
    # Every run that started has ended.
    assert all(len(run) == 2 for run in by_run(events).values())


def _scratch_job(resources, settings):
    model = resolve_model(resources.registry.get("tiny"), settings.models_dir)
    production = Production(models={"tiny": model}, background=None, logo=None)
    order = Order(id="scratch", segments=[Segment(prompt="a lineage", duration_s=0.5, fps=8)])
    return RENDER.plan(order, production, 0, [])


def test_a_cache_hit_is_a_run_and_a_dead_sink_fails_nothing(
    factory_home, tmp_path, monkeypatch, caplog
):
    """Outside any flow (no Prefect run): computing, then reusing, then a broken compute."""
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    monkeypatch.chdir(tmp_path)
    lineage_env(monkeypatch, tmp_path / "events.jsonl")
    settings = Settings()
    resources = open_resources(settings, "cpu", str(tmp_path / "store"))
    job = _scratch_job(resources, settings)
    context = RunContext(order_id="scratch", flow_run_id="not-a-uuid")

    computed = run_stage(resources, job, context, "use")
    reused = run_stage(resources, job, context, "use")
    failing = dataclasses.replace(job, stage=dataclasses.replace(RENDER, compute=lambda *a: 1 / 0))
    with pytest.raises(ZeroDivisionError):
        run_stage(resources, failing, context, "off")

    events = read_events(tmp_path / "events.jsonl")
    for event in events:
        validate_event(event)
    first, second, third = by_run(events).values()
    assert [e["eventType"] for e in (*first, *second, *third)] == [
        "START", "COMPLETE", "START", "COMPLETE", "START", "FAIL"
    ]  # fmt: skip
    assert first[1]["run"]["facets"][COST]["cacheHit"] is False
    hit = second[1]["run"]["facets"][COST]
    assert (hit["cacheHit"], hit["deviceSeconds"], hit["money"]) == (True, 0.0, 0.0)
    assert output_of(first) == output_of(second) == computed.asset.key == reused.asset.key
    # A flow run id that is no UUID still gives the parent a stable UUID.
    parents = {e["run"]["facets"]["parent"]["run"]["runId"] for e in events}
    assert len(parents) == 1
    uuid.UUID(parents.pop())

    # A sink that cannot be written: the stage still runs, and one warning says why.
    lineage_env(monkeypatch, tmp_path / "no-such-dir" / "events.jsonl")
    resources = open_resources(settings, "cpu", str(tmp_path / "store"))
    with caplog.at_level(logging.WARNING, logger="factory.openlineage"):
        again = run_stage(resources, job, context, "off")
    assert again.run.device_seconds > 0
    assert resources.store.head(again.asset.key) is not None
    warnings = [r for r in caplog.records if r.name == "factory.openlineage"]
    assert len(warnings) == 1
    assert "could not send an OpenLineage event" in warnings[0].getMessage()


def test_unconfigured_sends_nothing_and_never_imports_the_client(
    factory_home, tmp_path, monkeypatch
):
    for name in [name for name in os.environ if name.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    monkeypatch.chdir(tmp_path)
    # Any import of the client, or of the adapter that wraps it, now fails.
    for module in ("openlineage", "openlineage.client", "storage.openlineage"):
        monkeypatch.setitem(sys.modules, module, None)
    settings = Settings()
    resources = open_resources(settings, "cpu", str(tmp_path / "store"))
    assert resources.openlineage is None
    context = RunContext(order_id="scratch", flow_run_id="unconfigured")
    result = run_stage(resources, _scratch_job(resources, settings), context, "off")
    assert result.run.device_seconds > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_client_that_cannot_start_sends_nothing_and_fails_nothing(tmp_path, monkeypatch, caplog):
    lineage_env(monkeypatch, tmp_path / "events.jsonl")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "carrier-pigeon")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="factory.openlineage"):
        assert open_openlineage(str(tmp_path / "store")) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "factory.openlineage"]
    assert "OPENLINEAGE__TRANSPORT__" in warning and "no lineage events" in warning


def test_which_settings_turn_it_on(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    assert openlineage_settings({}, cwd, home) is None
    on = openlineage_settings({"OPENLINEAGE_URL": "http://localhost:5000"}, cwd, home)
    assert on is not None
    assert (on.namespace, on.configured_by) == (DEFAULT_NAMESPACE, "OPENLINEAGE_URL")
    env = {"OPENLINEAGE__TRANSPORT__TYPE": "console", "OPENLINEAGE_NAMESPACE": "studio-7"}
    on = openlineage_settings(env, cwd, home)
    assert on is not None
    assert (on.namespace, on.configured_by) == ("studio-7", "OPENLINEAGE__TRANSPORT__TYPE")
    (cwd / "openlineage.yml").write_text("transport: {type: console}\n")
    on = openlineage_settings({}, cwd, home)
    assert on is not None and on.configured_by.endswith("openlineage.yml")
    named = tmp_path / "elsewhere.yml"
    assert openlineage_settings({"OPENLINEAGE_CONFIG": str(named)}, tmp_path, home) is None
    named.write_text("transport: {type: console}\n")
    on = openlineage_settings({"OPENLINEAGE_CONFIG": str(named)}, tmp_path, home)
    assert on is not None and on.configured_by == "OPENLINEAGE_CONFIG"
    assert openlineage_settings({"OPENLINEAGE_DISABLED": "true", **env}, cwd, home) is None
