"""`factory runs list|show` and `factory submit`: the operator's view of `produce` flow runs.

Runs are read from the Prefect API (``PREFECT_API_URL``, else the factory's local server
when it runs, else Prefect's ephemeral local API);
a completed run's `Delivery` is read from its persisted result in the factory's store, and
its `delivery-<order id>` artifact from the API. Prefect is imported inside the commands, so
`factory --help` stays fast.
"""

import functools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.common import JsonOption
from factory.errors import BadInput, FactoryError

runs_app = typer.Typer(no_args_is_help=True, help="Recent `produce` flow runs: list and show")
out = Console()
console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

FLOW = "produce"
DASH = "-"
STATES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CANCELLING",
    "CRASHED",
    "PAUSED",
)


def _prefect_env() -> None:
    # Prefect reads these at import: quiet logs, no telemetry, a patient ephemeral API.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _on_local_server(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` against the factory's local server when that is the API to use."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        _prefect_env()
        from cli.local_server import api_settings
        from factory.settings import Settings

        with api_settings(Settings()):
            return command(*args, **kwargs)

    return run


def _api() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "Prefect's ephemeral local API (PREFECT_API_URL unset)"


def _client():
    _prefect_env()
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _delivery(run) -> Any:
    """The run's Delivery from its persisted result, or None when it cannot be read."""
    if run.state is None or not run.state.is_completed() or run.state.data is None:
        return None
    import tasks.results  # noqa: F401  registers the block type that reads the store
    from factory.assets import Delivery

    try:
        result = run.state.result(raise_on_failure=False)
    except Exception:
        return None
    return result if isinstance(result, Delivery) else None


def _time(value) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _order_id(run) -> str | None:
    order = (run.parameters or {}).get("order")
    return order.get("id") if isinstance(order, dict) else getattr(order, "id", None)


def _identity(run) -> dict:
    """What `runs list` and `runs show` both say first about a run."""
    return {
        "id": str(run.id),
        "name": run.name,
        "state": run.state_type.value if run.state_type else None,
        "state_name": run.state_name,
        "start_time": _time(run.start_time),
    }


def _summary(run) -> dict:
    delivery = _delivery(run)
    return {
        **_identity(run),
        "order_id": _order_id(run),
        "digest": f"sha256:{delivery.deliverable.digest}" if delivery else None,
        "verdict": delivery.verdict if delivery else None,
        "cost": delivery.cost if delivery else None,
        "currency": delivery.currency if delivery else None,
    }


@runs_app.command("list")
@_on_local_server
def list_runs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs, newest first")] = 20,
    state: Annotated[
        str | None,
        typer.Option("--state", help=f"Only runs in this state: {', '.join(STATES)}"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recent `produce` flow runs: state, order, deliverable digest, verdict and cost."""
    wanted = state.strip().upper() if state else None
    if wanted is not None and wanted not in STATES:
        raise BadInput(f"--state {state!r} is not a run state; use one of {', '.join(STATES)}")
    _prefect_env()
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = (
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(wanted)]))
        )
        if wanted
        else None
    )
    with _client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW])),
            flow_run_filter=run_filter,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
    rows = [_summary(run) for run in runs]
    if as_json:
        out.print_json(data=rows)
        return
    table = Table(title=f"`{FLOW}` flow runs on {_api()}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "name", "state", "started", "order", "deliverable", "verdict", "cost"):
        table.add_column(column, no_wrap=True, min_width=36 if column == "id" else None)
    for row in rows:
        cost = f"{row['cost']:.6f} {row['currency']}" if row["cost"] is not None else DASH
        table.add_row(
            row["id"],
            row["name"],
            row["state_name"] or DASH,
            row["start_time"].replace("T", " ")[:16] if row["start_time"] else DASH,
            row["order_id"] or DASH,
            (row["digest"].removeprefix("sha256:")[:12] + "…") if row["digest"] else DASH,
            row["verdict"] or DASH,
            cost,
        )
    out.print(table)


def _run_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise BadInput(
            f"{text!r} is not a flow run id (a UUID); `factory runs list` shows recent ones"
        ) from None


def run_details(client, run) -> dict:
    """Everything `runs show` tells about one flow run, as JSON-ready data."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
    artifacts = client.read_artifacts(
        flow_run_filter=this_run,
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="delivery-")),
    )
    task_runs = client.read_task_runs(flow_run_filter=this_run)
    parameters = run.parameters or {}
    order = parameters.get("order")
    delivery = _delivery(run)
    return {
        **_identity(run),
        "message": run.state.message if run.state else None,
        "end_time": _time(run.end_time),
        "deployment_id": str(run.deployment_id) if run.deployment_id else None,
        "parameters": {
            "order_id": _order_id(run),
            "segments": len(order.get("segments", [])) if isinstance(order, dict) else None,
            "store": parameters.get("store"),
            "cache": parameters.get("cache"),
        },
        "delivery": (
            {
                **delivery.model_dump(mode="json", exclude={"runs"}),
                "verdict": delivery.verdict,
                "device_seconds": delivery.device_seconds,
                "stage_runs": len(delivery.runs),
            }
            if delivery
            else None
        ),
        "artifact_key": artifacts[0].key if artifacts else None,
        "artifact": artifacts[0].data if artifacts else None,
        "task_runs": dict(sorted(Counter(t.state_name or "unknown" for t in task_runs).items())),
    }


def print_details(details: dict) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    state = details["state_name"] or DASH
    if details["message"]:
        state += f" ({details['message']})"
    parameters = details["parameters"]
    table.add_row("run", f"{details['name']}  {details['id']}")
    table.add_row("state", state)
    table.add_row(
        "started", f"{details['start_time'] or DASH}, ended {details['end_time'] or DASH}"
    )
    table.add_row(
        "order",
        f"{parameters['order_id'] or DASH} ({parameters['segments'] or 0} segments), "
        f"store {parameters['store'] or 'the worker default'}",
    )
    tasks = ", ".join(f"{count} {name}" for name, count in details["task_runs"].items())
    table.add_row("task runs", tasks or DASH)
    delivery = details["delivery"]
    if delivery is None:
        table.add_row(
            "delivery",
            "- (no readable result: the run has not completed, or its "
            "result is not in a store this machine can read)",
        )
    else:
        table.add_row("deliverable", delivery["deliverable"]["uri"])
        table.add_row("digest", f"sha256:{delivery['deliverable']['digest']}")
        table.add_row("duration", f"{delivery['duration_s']:.2f} s")
        table.add_row("verification", delivery["verdict"])
        table.add_row("device-seconds", f"{delivery['device_seconds']:.2f}")
        cost = delivery["cost"]
        table.add_row("cost", f"{cost:.6f} {delivery['currency']}" if cost is not None else DASH)
    if details["artifact"] and delivery is not None:
        table.add_row("artifact", f"{details['artifact_key']} (the same, in the UI; --json has it)")
    out.print(table)
    if details["artifact"] and delivery is None:
        # The artifact is all there is to read (the result's store is not reachable here).
        from rich.markdown import Markdown

        out.print(Markdown(details["artifact"]))


@runs_app.command()
@_on_local_server
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The flow run's id")],
    as_json: JsonOption = False,
) -> None:
    """One run in full: state, order, the delivery from its persisted result, its artifact."""
    uid = _run_id(run_id)
    _prefect_env()
    from prefect.exceptions import ObjectNotFound

    with _client() as client:
        try:
            run = client.read_flow_run(uid)
        except ObjectNotFound:
            raise FactoryError(
                f"no flow run {run_id} on {_api()}; `factory runs list` shows recent ones "
                "(is PREFECT_API_URL the server the run was on?)"
            ) from None
        details = run_details(client, run)
    if as_json:
        out.print_json(data=details)
    else:
        print_details(details)


def _deployment_names(client) -> list[str]:
    flows = {flow.id: flow.name for flow in client.read_flows()}
    return sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments())


@_on_local_server
def submit(
    order_file: Annotated[
        Path, typer.Argument(metavar="ORDER", help="Order file (.yaml, .yml or .json)")
    ],
    deployment: Annotated[
        str,
        typer.Option(
            "--deployment", help=f"Deployment to run: NAME (of the `{FLOW}` flow) or FLOW/NAME"
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Submitting the same key again returns the same run instead of a new one",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store the worker writes to. Default: the worker's own"),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run to end and print its delivery")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit an order to a deployment (a served or worker-run `produce`) on the Prefect API.

    The order is read and validated here first, as `factory run` does: a bad order is refused
    before anything is created. Prints the flow run's id and its UI link.
    """
    from factory.orders import load_order

    order = load_order(order_file)
    name = deployment if "/" in deployment else f"{FLOW}/{deployment}"
    parameters: dict[str, Any] = {"order": order.model_dump(mode="json")}
    if store is not None:
        parameters["store"] = store
    _prefect_env()
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.utilities.urls import url_for

    import tasks.results  # noqa: F401  so a waited-for result can be read from the store

    with _client() as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            known = _deployment_names(client)
            raise BadInput(
                f"no deployment {name} on {_api()}; deployments there: "
                f"{', '.join(known) or 'none (serve one: python deployments/serve.py)'}"
            ) from None
    try:
        run = run_deployment(
            name=name,
            parameters=parameters,
            timeout=None if wait else 0,
            idempotency_key=idempotency_key,
            as_subflow=False,
        )
    except PrefectHTTPStatusError as error:
        detail = error.response.text
        raise BadInput(f"{name} refused the order: {detail}") from None
    link = url_for(run)
    if wait:
        with _client() as client:
            details = run_details(client, client.read_flow_run(run.id))
    else:
        details = {"id": str(run.id), "name": run.name, "state_name": run.state_name}
    details = {**details, "deployment": name, "ui_url": link}
    if as_json:
        out.print_json(data=details)
        return
    console.print(f"submitted {name}: flow run {run.name} {run.id} ({run.state_name})")
    console.print(f"UI: {link}" if link else "UI: - (set PREFECT_UI_URL for a link)")
    if wait:
        print_details(details)
    else:
        console.print(f"follow it with: factory runs show {run.id}")
