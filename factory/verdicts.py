"""Quality verdicts: what a quality suite concluded about one asset, as plain data.

The quality floor (``quality/``) computes verdicts; the gate stage writes them into the
segment's lineage record and C2PA manifest; ``factory verify`` and the warehouse read
them back. A verdict names the suite and its version, so a cached segment's verdict is
reused only while the suite that judged it is unchanged.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

SuiteName = Literal["segment", "deliverable", "lineage"]

# Measured values keep 10 significant digits. Beyond that they are noise, and they would not
# survive the trip through c2pa-rs: its JSON parser may move a 17-digit float by one unit in
# the last place, so the manifest's copy of a verdict would differ from the record's.
SIGNIFICANT_DIGITS = 10


def _rounded(value: JsonValue) -> JsonValue:
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


class ExpectationFailure(BaseModel):
    """One expectation that did not hold: what was expected, of which metric, and what was seen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    expectation: str = Field(
        description="The Great Expectations type, e.g. expect_column_max_to_be_between"
    )
    metric: str | None = Field(description="The metric (column) it was about; None for table-level")
    observed: JsonValue = Field(description="The observed value, as GX reported it")
    expected: dict[str, JsonValue] = Field(description="The bounds or value it was held to")

    @field_validator("observed", "expected")
    @classmethod
    def _round(cls, value: JsonValue) -> JsonValue:
        return _rounded(value)


class Verdict(BaseModel):
    """A suite's conclusion about one asset (a segment, a deliverable, a run's lineage)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    suite: SuiteName
    suite_version: str = Field(description="The thresholds file's version: a change re-judges")
    passed: bool
    failures: tuple[ExpectationFailure, ...] = ()
    metrics: dict[str, JsonValue] = Field(
        default_factory=dict, description="The measured values the expectations read"
    )
    attempt: int = Field(default=1, ge=1, description="Which attempt at the asset this judged")

    @field_validator("metrics")
    @classmethod
    def _round(cls, value: dict[str, JsonValue]) -> JsonValue:
        return _rounded(value)

    def describe(self) -> str:
        """One line per failing expectation, for errors and reports."""
        if self.passed:
            return f"{self.suite} suite {self.suite_version}: passed"
        lines = [f"{self.suite} suite {self.suite_version}: failed"]
        for failure in self.failures:
            bounds = ", ".join(f"{key}={value}" for key, value in failure.expected.items())
            lines.append(
                f"  {failure.expectation}({failure.metric or 'table'}): "
                f"observed {failure.observed}, expected {bounds}"
            )
        return "\n".join(lines)
