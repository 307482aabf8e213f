"""Schedules that last: defined here once, added only when absent, never replaced on restart.

Prefect 3.9 replaces a deployment's schedules whenever it is re-applied with a schedule
list, and ``flow.serve``/``to_deployment`` always send one (empty when none is given), so
schedules added in the UI vanished at every restart of ``serve.py``. Here:

- deployments are applied **without** a schedule list (``keep_schedules``), so what is on
  the server stays: schedules from the UI or API, and the ones below;
- the code-defined schedules below are created only when no schedule with their slug
  exists, so an operator who edits or pauses one in the UI keeps the change, and one
  who deletes it gets it back at the next start;
- a schedule whose parameters the deployment would refuse (the produce flow's required
  ``order`` missing, a bad value) is switched off, with a line saying why: Prefect accepts
  such schedules and their runs would only fail when they start.

``serve.py`` does all of this at start. After ``prefect deploy`` (deployments/prefect.yaml
carries no ``schedules`` keys for the same reason) run this file once:

    python deployments/schedules.py
"""

from datetime import timedelta
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.utilities.schema_tools.validation import validate

# Per flow: the schedules every deployment of that flow gets. Produce has none: an order
# is the caller's, and a schedule without one would be refused below.
CODE_SCHEDULES: dict[str, list[DeploymentScheduleCreate]] = {
    "floor-report": [
        DeploymentScheduleCreate(
            slug="nightly-floor-report",
            schedule=CronSchedule(cron="0 2 * * *", timezone="UTC"),
        )
    ],
    "cache-gc": [
        DeploymentScheduleCreate(
            slug="cache-gc-every-6h",
            schedule=IntervalSchedule(interval=timedelta(hours=6)),
            parameters={"older_than_days": 7},
        )
    ],
}
FACTORY_FLOWS = ("produce", *CODE_SCHEDULES)


def keep_schedules(deployment: RunnerDeployment) -> RunnerDeployment:
    """``deployment`` applied without touching the server's schedules.

    ``to_deployment`` marks ``schedules`` (an empty list) as set, and ``apply`` sends every
    set field: the server then replaces the schedules with none. Unset, the field is left
    out of the update and the server keeps what it has.
    """
    deployment.model_fields_set.discard("schedules")
    return deployment


def add_missing_schedules(client: SyncPrefectClient, deployment: DeploymentResponse) -> list[str]:
    """Create the code-defined schedules of ``deployment``'s flow that it lacks; their slugs."""
    wanted = CODE_SCHEDULES.get(_flow_name(client, deployment), [])
    present = {schedule.slug for schedule in client.read_deployment_schedules(deployment.id)}
    missing = [schedule for schedule in wanted if schedule.slug not in present]
    if missing:
        client.create_deployment_schedules(deployment.id, missing)
    return [schedule.slug or "" for schedule in missing]


def refused_parameters(deployment: DeploymentResponse, parameters: dict[str, Any]) -> list[str]:
    """What the deployment's parameter schema says about ``parameters`` (over its defaults)."""
    merged = {**(deployment.parameters or {}), **parameters}
    errors = validate(merged, deployment.parameter_openapi_schema or {}, raise_on_error=False)
    return sorted({_describe(error) for error in errors})


def switch_off_unrunnable(client: SyncPrefectClient, deployment: DeploymentResponse) -> list[str]:
    """Deactivate the active schedules whose runs the deployment would refuse; one line each."""
    lines = []
    for schedule in client.read_deployment_schedules(deployment.id):
        problems = refused_parameters(deployment, schedule.parameters)
        if not schedule.active or not problems:
            continue
        # Prefect 3.9's schedule PATCH resets parameters it is not sent: send them back.
        client.update_deployment_schedule(
            deployment.id, schedule.id, active=False, parameters=schedule.parameters
        )
        where = _full_name(client, deployment)
        lines.append(
            f"switched off schedule {_label(schedule)} of {where}: its runs would be refused"
            f" ({'; '.join(problems)}); give it the parameters in the UI "
            "(Deployment → Schedules → Edit) and switch it back on"
        )
    return lines


def settle_schedules(client: SyncPrefectClient) -> list[str]:
    """Add missing code schedules and switch off unrunnable ones on every factory deployment."""
    lines = []
    for deployment in client.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=list(FACTORY_FLOWS)))
    ):
        name = _full_name(client, deployment)
        lines += [
            f"added schedule {slug} to {name}" for slug in add_missing_schedules(client, deployment)
        ]
        # Read again: the schedules just added count too.
        lines += switch_off_unrunnable(client, client.read_deployment(deployment.id))
    return lines


def _describe(error: Any) -> str:
    where = error.json_path.removeprefix("$").lstrip(".")
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return "; ".join(f"{'.'.join(filter(None, (where, name)))}: missing" for name in missing)
    return f"{where or 'parameters'}: {error.message}"


def _label(schedule: DeploymentSchedule) -> str:
    """How an operator recognises a schedule in the UI: its slug, else what it says."""
    if schedule.slug:
        return schedule.slug
    rule = schedule.schedule
    if isinstance(rule, CronSchedule):
        return f"'{rule.cron}' ({schedule.id})"
    if isinstance(rule, IntervalSchedule):
        return f"every {rule.interval} ({schedule.id})"
    return str(schedule.id)


def _flow_name(client: SyncPrefectClient, deployment: DeploymentResponse) -> str:
    return client.read_flow(deployment.flow_id).name


def _full_name(client: SyncPrefectClient, deployment: DeploymentResponse) -> str:
    return f"{_flow_name(client, deployment)}/{deployment.name}"


if __name__ == "__main__":
    with get_client(sync_client=True) as api:
        for line in settle_schedules(api) or ["schedules already in place"]:
            print(line)
