"""The factory floor's facts and contracts: floor events, worker availability, prices, budgets.

Every task run attempt leaves one ``FloorEvent``: which stage ran for which order
and segment, on which worker and device, for how long, and how it ended. Workers
report ``WorkerAvailability`` intervals (when they could have worked), so idle time
shows. The DuckDB warehouse (``storage.warehouse``) turns both, with the signed
lineage records, into yield, utilization, cost per delivered minute, cache savings,
royalties and stage latency.

Two config files say what the numbers are measured against:

* ``PriceCard`` (``factory/price_card.toml``): money per device-hour per device class,
  with a ``default`` rate for classes it does not name, and the royalty owed per
  delivered minute.
* ``LatencyBudget`` (``factory/latency_budget.toml``): a p95 budget per stage and an
  end-to-end target. A budget is a contract, so the stage budgets may not add up to
  more than the end-to-end target.

Status of an event, one of:

``completed``  the attempt produced its output (a gate: the segment was accepted)
``failed``     the attempt failed and nothing retried it (the task run failed)
``retried``    the attempt failed and Prefect retried it (the next attempt follows)
``cache_hit``  the stage reused an earlier identical output instead of computing it
``rejected``   a quality gate rejected the segment; it is rendered again

A segment *pass* starts with a render event whose ``attempt`` is 1 (a retry inside
the same task run has attempt 2, 3…; a re-render after a rejection, or a rerun of the
order, is a new task run and starts again at 1).
"""

import math
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from factory.assets import RunRecord
from factory.errors import BadInput, validation_problems
from factory.stages import STAGES, StageName

EventStatus = Literal["completed", "failed", "retried", "cache_hit", "rejected"]

STATUSES: tuple[str, ...] = ("completed", "failed", "retried", "cache_hit", "rejected")
END_TO_END = "end_to_end"

PRICE_CARD_PATH = Path(__file__).with_name("price_card.toml")
LATENCY_BUDGET_PATH = Path(__file__).with_name("latency_budget.toml")

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _new_event_id() -> str:
    return uuid.uuid4().hex


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_serializer("*", when_used="json")
    def _utc_z(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return value


class FloorEvent(_Fact):
    """One task run attempt on the factory floor."""

    event_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] = Field(
        default_factory=_new_event_id, description="uuid4 hex; the event's identity"
    )
    order_id: NonEmpty
    flow_run_id: NonEmpty
    task_run_id: NonEmpty
    segment_index: int | None = Field(default=None, ge=0, description="None for order-level work")
    stage: StageName
    attempt: int = Field(default=1, ge=1, description="Prefect's attempt number in the task run")
    model: str | None = Field(default=None, description="The model a render used")
    device_class: NonEmpty = Field(description="'cpu' or the GPU's model name")
    worker_id: NonEmpty = Field(
        description="The worker that ran it: host and configured name (`FACTORY_WORKER_NAME`)"
    )
    started: AwareDatetime
    ended: AwareDatetime
    device_seconds: float = Field(ge=0, description="Seconds the device was busy")
    status: EventStatus
    cache_hit: bool = Field(
        default=False,
        description="True when status is cache_hit, or a rejected gate that reused its verdict",
    )
    bytes_in: int = Field(default=0, ge=0)
    bytes_out: int = Field(default=0, ge=0)
    output_digest: Digest | None = None
    delivered_seconds: float = Field(
        default=0.0,
        ge=0,
        description="The deliverable's real duration, on the assemble event of a delivered order",
    )

    @model_validator(mode="before")
    @classmethod
    def _hit_from_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") == "cache_hit" and "cache_hit" not in data:
            return {**data, "cache_hit": True}
        return data

    @field_validator("started", "ended")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> "FloorEvent":
        if self.ended < self.started:
            raise ValueError(f"ended ({self.ended}) is before started ({self.started})")
        # A gate that reuses an earlier rejection is both a cache hit and a rejection.
        if self.cache_hit != (self.status == "cache_hit") and self.status != "rejected":
            raise ValueError(
                f"cache_hit={self.cache_hit} contradicts status {self.status!r}: "
                "cache_hit is true exactly when status is 'cache_hit' (or a reused 'rejected')"
            )
        if self.delivered_seconds > 0 and not (
            self.stage == "assemble" and self.status in ("completed", "cache_hit")
        ):
            raise ValueError(
                "delivered_seconds is set only on the completed assemble event of a delivered "
                f"order (this is a {self.status} {self.stage} event)"
            )
        return self

    @property
    def wall_seconds(self) -> float:
        return (self.ended - self.started).total_seconds()

    @classmethod
    def from_run(
        cls,
        run: RunRecord,
        *,
        order_id: str,
        flow_run_id: str,
        task_run_id: str,
        status: EventStatus = "completed",
        **fields: Any,
    ) -> "FloorEvent":
        """The event for a stage's RunRecord; ``fields`` sets the rest (model, attempt, bytes…)."""
        return cls(
            order_id=order_id,
            flow_run_id=flow_run_id,
            task_run_id=task_run_id,
            segment_index=run.segment_index,
            stage=run.stage,
            device_class=run.device_class,
            started=run.started,
            ended=run.ended,
            device_seconds=run.device_seconds,
            output_digest=run.output_digest if status in ("completed", "cache_hit") else None,
            status=status,
            **fields,
        )


class WorkerAvailability(_Fact):
    """An interval during which a worker was up and could have taken work."""

    worker_id: NonEmpty
    device_class: NonEmpty
    up_from: AwareDatetime
    up_to: AwareDatetime

    @field_validator("up_from", "up_to")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> "WorkerAvailability":
        if self.up_to < self.up_from:
            raise ValueError(f"up_to ({self.up_to}) is before up_from ({self.up_from})")
        return self


class PriceCard(BaseModel):
    """What device time and delivered minutes cost."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        description="ISO 4217 code, e.g. USD"
    )
    royalty_per_delivered_minute: float = Field(
        ge=0, description="Royalties owed per delivered minute, split by model and routing"
    )
    device_hour: dict[NonEmpty, float] = Field(
        description="Money per device-hour by device class; 'default' covers the rest"
    )

    @field_validator("device_hour")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        if "default" not in value:
            raise ValueError(
                "needs a 'default' rate for device classes it does not name "
                "(add `default = 2.00` under [device_hour])"
            )
        for device, rate in value.items():
            if not math.isfinite(rate) or rate < 0:
                raise ValueError(f"rate for {device!r} is {rate}; rates are finite and ≥ 0")
        return value

    def rate(self, device_class: str) -> float:
        """Money per device-hour for a device class (the default rate when unnamed)."""
        return self.device_hour.get(device_class, self.device_hour["default"])


class LatencyBudget(BaseModel):
    """p95 latency budgets per stage and the end-to-end target they must fit in."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    end_to_end_ms: float = Field(gt=0, description="Target for a whole delivered flow run")
    stages: dict[str, float] = Field(description="p95 budget per stage, in ms")

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(STAGES))
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}"
            )
        for stage, budget in value.items():
            if not math.isfinite(budget) or budget <= 0:
                raise ValueError(f"budget for {stage!r} is {budget} ms; budgets are > 0")
        return value

    @model_validator(mode="after")
    def _fits(self) -> "LatencyBudget":
        total = sum(self.stages.values())
        if total > self.end_to_end_ms:
            parts = " + ".join(f"{stage} {ms:g}" for stage, ms in self.stages.items())
            raise ValueError(
                f"the stage budgets add up to {total:g} ms ({parts}), more than the end-to-end "
                f"target of {self.end_to_end_ms:g} ms; a budget is a contract: lower the "
                "stage budgets or raise end_to_end_ms"
            )
        return self


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{what} {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BadInput(f"{what} {path} cannot be read: {error}.") from None


def _problems(error: ValidationError) -> str:
    return "; ".join(validation_problems(error, root="file", limit=5))


def load_price_card(path: Path | None = None) -> PriceCard:
    """The price card from TOML (default: the shipped ``factory/price_card.toml``)."""
    path = path or PRICE_CARD_PATH
    data = _read_toml(path, "price card")
    try:
        return PriceCard.model_validate(data)
    except ValidationError as error:
        raise BadInput(
            f"price card {path} is invalid: {_problems(error)}. See {PRICE_CARD_PATH} for the "
            "expected shape."
        ) from None


def load_latency_budget(path: Path | None = None) -> LatencyBudget:
    """The latency budget from TOML (default: the shipped ``factory/latency_budget.toml``)."""
    path = path or LATENCY_BUDGET_PATH
    data = _read_toml(path, "latency budget")
    try:
        return LatencyBudget.model_validate(data)
    except ValidationError as error:
        raise BadInput(
            f"latency budget {path} is invalid: {_problems(error)}. See {LATENCY_BUDGET_PATH} "
            "for the expected shape."
        ) from None
