"""The Great Expectations suites: segment, deliverable and lineage completeness.

Everything runs in one ephemeral GX context (nothing written, no network, progress bars
off) built once per process by ``quality.judge.Judge``: importing GX alone takes seconds,
so only code that validates imports this module.

Each suite validates a DataFrame whose rows are the things judged (segments, the
deliverable, a run's assets); results are read per expectation and per failing row
(``unexpected_index_list``), so one validation call judges many segments. GX returns
results in no particular order, and an expectation that crashed reports ``success=False``
with its exception instead of data: that is raised as a ``SuiteError``, never passed off
as media that failed.
"""

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from pydantic import JsonValue

from factory.errors import BadInput, FactoryError
from factory.verdicts import ExpectationFailure, SuiteName, Verdict
from quality.tables import Row
from quality.thresholds import Thresholds

# The columns GX reports back for each failing row: the first names the row; a run's
# lineage also says which stage made the asset and what was wrong with it.
INDEX_COLUMNS: dict[SuiteName, tuple[str, ...]] = {
    "segment": ("segment",),
    "deliverable": ("deliverable",),
    "lineage": ("asset_digest", "stage", "problem"),
}
# Validation results a judge keeps for Data Docs, newest last.
KEPT_VALIDATIONS = 1000
# Bounds and values an expectation was held to, as its kwargs name them.
_BOUND_KWARGS = ("min_value", "max_value", "value_set", "value")


class SuiteError(FactoryError):
    """A suite could not be evaluated (an expectation crashed): a fault, not a verdict."""


def _segment_expectations(thresholds: Thresholds) -> list[gxe.Expectation]:
    limits = thresholds.segment
    equal = [
        gxe.ExpectColumnPairValuesToBeEqual(column_A=measured, column_B=f"target_{measured}")
        for measured in ("width", "height", "fps", "frames")
    ]
    return [
        *equal,
        gxe.ExpectColumnValuesToBeBetween(
            column="duration_error_s", max_value=limits.duration_tolerance_s
        ),
        gxe.ExpectColumnValuesToBeBetween(column="luma_mean_max", max_value=limits.luma_mean_max),
        gxe.ExpectColumnValuesToBeBetween(column="luma_range_min", min_value=limits.luma_range_min),
        gxe.ExpectColumnValuesToBeBetween(column="black_share", max_value=limits.black_share_max),
        gxe.ExpectColumnValuesToBeBetween(column="frozen_run_s", max_value=limits.frozen_run_max_s),
        gxe.ExpectColumnValuesToBeBetween(column="flicker_max", max_value=limits.flicker_max),
        gxe.ExpectColumnValuesToBeBetween(
            column="bits_per_pixel",
            min_value=limits.bits_per_pixel_min,
            max_value=limits.bits_per_pixel_max,
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="nonfinite_share", max_value=limits.nonfinite_share_max
        ),
    ]


def _deliverable_expectations(thresholds: Thresholds) -> list[gxe.Expectation]:
    equal = [
        gxe.ExpectColumnPairValuesToBeEqual(column_A=measured, column_B=f"target_{measured}")
        for measured in ("width", "height", "fps", "frames", "segment_count")
    ]
    return [
        *equal,
        gxe.ExpectColumnValuesToBeBetween(
            column="duration_error_s", max_value=thresholds.deliverable.duration_tolerance_s
        ),
        gxe.ExpectColumnValuesToBeBetween(column="misplaced_segment_starts", max_value=0),
    ]


def _lineage_expectations(thresholds: Thresholds) -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="record_verified", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="parents_exist", value_set=[True]),
    ]


_EXPECTATIONS = {
    "segment": _segment_expectations,
    "deliverable": _deliverable_expectations,
    "lineage": _lineage_expectations,
}


class Suites:
    """The three suites in one ephemeral GX context, and the validations run so far."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        # GX logs its set-up at INFO (a docs-site temp path per context): not the factory's news.
        # GX gives some of its own loggers a level of their own, so each one is set.
        for name in [*logging.root.manager.loggerDict, "great_expectations"]:
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        source = self.context.data_sources.add_pandas("quality")
        self._definitions = {}
        self.expectations: dict[SuiteName, list[tuple[str, str | None, dict[str, Any]]]] = {}
        for name, expectations in _EXPECTATIONS.items():
            suite = self.context.suites.add(gx.ExpectationSuite(name=name))
            self.expectations[name] = []
            for expectation in expectations(thresholds):
                suite.add_expectation(expectation)
                config = expectation.configuration
                self.expectations[name].append(
                    (config.type, _column(config.kwargs), _bounds(config.kwargs))
                )
            batches = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            self._definitions[name] = (batches, suite)
        # One GX context is not known to be safe across threads; stage tasks may share a judge.
        self.lock = threading.Lock()
        # Kept for Data Docs; bounded, so a long-lived worker's judge does not grow forever.
        self.validations: deque[ExpectationSuiteValidationResult] = deque(maxlen=KEPT_VALIDATIONS)

    def validate(self, suite: SuiteName, frame: pd.DataFrame) -> dict[str, Any]:
        """Run ``suite`` on ``frame``; its result as JSON (raises SuiteError on a crash).

        A first pass asks GX only whether every expectation held, which costs about a third
        less; only when one did not is the suite run again for the failing rows and their
        observed values. Most media passes, so most validations stop after the first pass.
        """
        batches, expectations = self._definitions[suite]
        with self.lock:
            # Batch.validate, not a ValidationDefinition: that would also serialize every
            # result into the context's store, a tenth of the time, and keep it forever.
            batch = batches.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(expectations, result_format="BOOLEAN_ONLY")
            if not result.success:
                result = batch.validate(
                    expectations,
                    result_format={
                        "result_format": "COMPLETE",
                        "unexpected_index_column_names": list(INDEX_COLUMNS[suite]),
                    },
                )
            self.validations.append(result)
        report = result.to_json_dict()
        for entry in report["results"]:
            info = entry.get("exception_info") or {}
            crashes = [info] if "raised_exception" in info else list(info.values())
            for crash in crashes:
                if crash.get("raised_exception", True):
                    raise SuiteError(
                        f"the {suite} suite's {_describe(entry)} could not be evaluated: "
                        f"{crash.get('exception_message') or 'no message'}; this is a fault in "
                        "the suite or its table, not a verdict on the media"
                    )
        return report

    def judge(
        self, suite: SuiteName, rows: Sequence[Row], *, attempt: int | Sequence[int] = 1
    ) -> list[Verdict]:
        """One verdict per row of ``rows``, from one validation of them all.

        ``attempt`` is the attempt every row judges, or one per row (rows of segments on
        different takes, judged together).
        """
        attempts = [attempt] * len(rows) if isinstance(attempt, int) else list(attempt)
        if len(attempts) != len(rows):
            raise BadInput(f"{len(attempts)} attempts for {len(rows)} rows: give one per row")
        key = INDEX_COLUMNS[suite][0]
        report = self.validate(suite, pd.DataFrame(list(rows)))
        failures: dict[JsonValue, list[ExpectationFailure]] = {row[key]: [] for row in rows}
        for entry in report["results"]:
            if entry["success"]:
                continue
            for row_key, failure in _failures(entry, key):
                failures[row_key].append(failure)
        if not report["success"] and not any(failures.values()):
            raise SuiteError(
                f"the {suite} suite failed but GX named no failing row; this is a fault in the "
                "suite, not a verdict on the media"
            )
        for found in failures.values():
            found.sort(key=self._position(suite))
        return [
            Verdict(
                suite=suite,
                suite_version=self.thresholds.version,
                passed=not failures[row[key]],
                failures=tuple(failures[row[key]]),
                # The key is the row's place in this batch, which means nothing later.
                metrics={name: value for name, value in row.items() if name != key},
                attempt=row_attempt,
            )
            for row, row_attempt in zip(rows, attempts, strict=True)
        ]

    def judge_table(self, suite: SuiteName, frame: pd.DataFrame) -> Verdict:
        """One verdict on a whole table (a run's lineage): every failing row is a failure."""
        key = INDEX_COLUMNS[suite][0]
        report = self.validate(suite, frame)
        failures = sorted(
            (
                failure
                for entry in report["results"]
                if not entry["success"]
                for _, failure in _failures(entry, key, whole_row=True)
            ),
            key=self._position(suite),
        )
        statistics = report.get("statistics", {})
        return Verdict(
            suite=suite,
            suite_version=self.thresholds.version,
            passed=not failures,
            failures=tuple(failures),
            metrics={
                "rows": len(frame),
                "expectations": statistics.get("evaluated_expectations"),
                "failed": statistics.get("unsuccessful_expectations"),
            },
        )

    def _position(self, suite: SuiteName):
        """Sort key putting failures in the suite's own order (GX reports them in any order),
        so the same media always gives the same verdict, byte for byte."""
        order = [(kind, column) for kind, column, _ in self.expectations[suite]]
        return lambda failure: order.index((failure.expectation, failure.metric))


def _column(kwargs: dict[str, Any]) -> str | None:
    return kwargs.get("column") or kwargs.get("column_A")


def _bounds(kwargs: dict[str, Any]) -> dict[str, Any]:
    if "column_B" in kwargs:
        return {"equal_to": kwargs["column_B"]}
    return {name: kwargs[name] for name in _BOUND_KWARGS if kwargs.get(name) is not None}


def _describe(entry: dict[str, Any]) -> str:
    config = entry["expectation_config"]
    return f"{config['type']}({_column(config['kwargs']) or 'table'})"


def _failures(
    entry: dict[str, Any], key: str, *, whole_row: bool = False
) -> list[tuple[JsonValue, ExpectationFailure]]:
    """(row key, failure) for every row an expectation failed; key None for table-level."""
    config = entry["expectation_config"]
    kwargs = config["kwargs"]
    bounds = _bounds(kwargs)
    result = entry.get("result") or {}
    column = _column(kwargs)
    if column is None:
        failure = ExpectationFailure(
            expectation=config["type"],
            metric=None,
            observed=result.get("observed_value"),
            expected=bounds,
        )
        return [(None, failure)]
    found = []
    for unexpected in result.get("unexpected_index_list") or []:
        expected = dict(bounds)
        if "column_B" in kwargs:
            expected["value"] = unexpected[kwargs["column_B"]]
        observed = unexpected if whole_row else unexpected[column]
        failure = ExpectationFailure(
            expectation=config["type"], metric=column, observed=observed, expected=expected
        )
        found.append((unexpected[key], failure))
    return found
