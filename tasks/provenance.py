"""Provenance for every stage: the signed lineage record of its output, and what its C2PA
manifest asserts about it.

The signing identity comes with the resources the entry point opened; private keys
never appear in a record, a parameter shown by Prefect, or a log line.
"""

import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from prefect.runtime import task_run
from pydantic import BaseModel, ConfigDict, JsonValue

import factory
from factory.assets import AssetRef, Recorded, RunRecord
from factory.errors import WriteConflict
from factory.lineage import (
    AssetInfo,
    CodeInfo,
    LineageRecord,
    ModelInfo,
    ParentLink,
    StageInfo,
    record_digest,
    sign_record,
)
from factory.verdicts import Verdict
from media.credentials import QUALITY_VERDICT_LABEL
from storage.assets import put_asset
from storage.lineage import RecordStore
from tasks.resources import Resources


class RunContext(BaseModel):
    """Who asked for the work: the order and the flow run every record names."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    flow_run_id: str


@cache
def code_info() -> CodeInfo:
    """The package version, and the git commit when running from a checkout."""
    root = Path(factory.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return CodeInfo(package_version=factory.__version__, git_commit=commit or None)


def verdict_assertions(
    verdict: Verdict | None, planned: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The stage's extra C2PA assertions: those planned (a deliverable's segment verdicts),
    with the verdict its own suite reached merged into the quality-verdict assertion."""
    merged = {label: dict(data) for label, data in planned.items()}
    if verdict is not None:
        merged[QUALITY_VERDICT_LABEL] = {
            **merged.get(QUALITY_VERDICT_LABEL, {}),
            **verdict.model_dump(mode="json"),
        }
    return merged


def segment_verdicts_assertion(verdicts: list[Verdict]) -> dict[str, dict[str, Any]]:
    """The deliverable's assertion naming the verdict each of its segments was accepted on."""
    return {
        QUALITY_VERDICT_LABEL: {
            "segments": [
                {
                    "index": index,
                    "suite": verdict.suite,
                    "suite_version": verdict.suite_version,
                    "passed": verdict.passed,
                    "attempt": verdict.attempt,
                }
                for index, verdict in enumerate(verdicts)
            ]
        }
    }


def media_assertion(
    stage: str, context: RunContext, parents: list[Recorded], models: list[ModelInfo]
) -> dict[str, JsonValue]:
    """What the factory's custom C2PA assertion says about a media asset.

    The asset's own record cannot be named by digest here: the record describes the
    signed bytes, which exist only after this manifest is signed. So the assertion
    names where the record lives (by the file's own SHA-256) and the digests of the
    parents' records, which the record repeats (and `factory verify` checks through the
    records' hash links).
    """
    return {
        "stage": stage,
        "order_id": context.order_id,
        "flow_run_id": context.flow_run_id,
        "lineage_record": "lineage/records/<sha256[:2]>/<sha256 of this file>.dsse.json",
        "parent_records": [
            {"digest": parent.asset.digest, "record_digest": parent.record_digest}
            for parent in parents
        ],
        "models": [model.model_dump(mode="json") for model in models],
    }


def _task_run_id() -> str:
    # Plain calls (tests, benchmarks) have no task run; say so rather than invent an id.
    return str(task_run.id) if task_run.id else "none"


def write_record(
    resources: Resources,
    asset: AssetRef,
    *,
    stage: str,
    version: str,
    parents: list[Recorded],
    context: RunContext,
    run: RunRecord,
    model: ModelInfo | None = None,
    parameters: dict[str, JsonValue] | None = None,
    reused_from: str | None = None,
    verdict: Verdict | None = None,
) -> str:
    """Sign the asset's lineage record and store it write-once; returns its record digest.

    With ``reused_from`` (the original record's digest) this is the record of a cache
    reuse, stored beside the asset's producing record rather than in its place.
    """
    signer = resources.signers.lineage
    record = LineageRecord(
        asset=AssetInfo(
            digest=asset.digest, media_type=asset.media_type, size=asset.size, uri=asset.uri
        ),
        parents=[
            ParentLink(digest=parent.asset.digest, record_digest=parent.record_digest)
            for parent in parents
        ],
        stage=StageInfo(name=stage, version=version),
        order_id=context.order_id,
        flow_run_id=context.flow_run_id,
        task_run_id=_task_run_id(),
        model=model,
        parameters=parameters or {},
        device_class=run.device_class,
        device_seconds=run.device_seconds,
        started=run.started,
        ended=run.ended,
        code=code_info(),
        key_id=signer.key_id,
        reused_from=reused_from,
        verdict=verdict,
    )
    records = RecordStore(resources.store)
    envelope = sign_record(record, signer)
    if reused_from is not None:
        return records.write_reuse(envelope, asset.digest, context.flow_run_id)
    return records.write(envelope, asset.digest, context.flow_run_id)


def ingest_input(
    resources: Resources, data: bytes, media_type: str, role: str, context: RunContext
) -> Recorded:
    """Store an order's input file (logo, background) with a record of where it came in.

    Inputs are not signed media and their bytes repeat across orders, so the first
    ingest's record stands for every later use of the same bytes.
    """
    asset = put_asset(resources.store, data, media_type)
    records = RecordStore(resources.store)
    if records.exists(asset.digest):
        return Recorded(asset=asset, record_digest=record_digest(records.read(asset.digest)))
    now = datetime.now(UTC)
    run = RunRecord(
        stage="ingest",
        device_class="cpu",
        device_seconds=0.0,
        wall_seconds=0.0,
        started=now,
        ended=now,
        output_digest=asset.digest,
    )
    try:
        digest = write_record(
            resources,
            asset,
            stage="ingest",
            version="1",
            parents=[],
            context=context,
            run=run,
            parameters={"role": role},
        )
    except WriteConflict:
        # Another run ingested the same bytes at the same moment; its record stands.
        digest = record_digest(records.read(asset.digest))
    return Recorded(asset=asset, record_digest=digest)
