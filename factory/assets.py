"""Typed references to produced assets and the run records that accompany them.

Every stage returns an ``AssetRef`` (what it made) and a ``RunRecord`` (what it
cost). Lineage, the segment cache and the floor warehouse attach to these two.
"""

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from factory.registry import ModelInfo
from factory.stages import StageName
from factory.verdicts import Verdict

MEDIA_LOSSLESS_RGB_MP4 = "video/mp4; codecs=h264-lossless-rgb"
MEDIA_LOSSLESS_YUV420_MP4 = "video/mp4; codecs=h264-lossless-yuv420p"
MEDIA_MP4 = "video/mp4"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AssetRef(BaseModel):
    """A content-addressed object in the store."""

    model_config = ConfigDict(frozen=True)

    digest: str = Field(description="SHA-256 of the asset's bytes, lowercase hex")
    uri: str = Field(description="Where the bytes live: file:// or s3:// URI")
    key: str = Field(description="The object's key inside its store")
    media_type: str
    size: int = Field(ge=0, description="Bytes")
    parents: tuple[str, ...] = Field(default=(), description="Digests of the input assets")


class RunRecord(BaseModel):
    """What one stage run cost: device, device-seconds and wall time."""

    model_config = ConfigDict(frozen=True)

    stage: StageName
    segment_index: int | None = None
    device_class: str = Field(description="'cpu' or the GPU's model name")
    device_seconds: float = Field(ge=0, description="Seconds the compute device was busy")
    wall_seconds: float = Field(ge=0)
    started: datetime
    ended: datetime
    output_digest: str
    cache_hit: bool = Field(default=False, description="The output was reused, not computed")
    cache_note: str | None = Field(
        default=None, description="Why a cached output could not be used (repaired by this run)"
    )


class Recorded(BaseModel):
    """An asset together with the digest of the signed lineage record that describes it."""

    model_config = ConfigDict(frozen=True)

    asset: AssetRef
    record_digest: str = Field(description="SHA-256 of the asset's lineage record envelope")
    models: list[ModelInfo] = Field(
        default=[], description="The models in this asset's ancestry, for its C2PA assertion"
    )
    metrics: dict[str, float] = Field(
        default={},
        description="What the producing stage measured of its output that a later judge "
        "reads (a render's non-finite share, which the lossless file cannot show)",
    )
    verdict: Verdict | None = Field(
        default=None, description="The quality gate's verdict on this asset (gate outputs only)"
    )


class StageResult(Recorded):
    """What every stage function returns: the asset, its record digest and its run record."""

    run: RunRecord


class Delivery(BaseModel):
    """What a finished production returns to its caller (CLI, API client, UI).

    It is the flow run's persisted result: Prefect stores it as JSON in the factory's store
    (see ``tasks.results``), where the API's ``state.data.storage_key`` points.
    """

    model_config = ConfigDict(frozen=True)

    order_id: str
    flow_run_id: str
    deliverable: AssetRef
    record_digest: str = Field(description="SHA-256 of the deliverable's lineage record")
    duration_s: float = Field(description="Seconds of video delivered")
    store: str
    runs: list[RunRecord]
    verified: bool | None = Field(
        default=None,
        description="Whether the deliverable verified (C2PA and signed lineage) against the "
        "factory's root at the end of the run; None when not checked",
    )
    problems: list[str] = Field(default_factory=list, description="Why it did not verify")
    cost: float | None = Field(
        default=None,
        description="This run's stage device time priced by the price card (failed attempts "
        "and retries are in the floor warehouse, not here)",
    )
    currency: str = "USD"
    segment_verdicts: list[Verdict] = Field(
        default_factory=list,
        description="Each segment's accepted quality verdict, in order (attempt: which take)",
    )
    deliverable_verdict: Verdict | None = Field(
        default=None, description="The deliverable suite's verdict (duration, size, segments)"
    )
    qc_docs: str | None = Field(
        default=None,
        description="Great Expectations Data Docs of this run's validations (a file path)",
    )
    lineage_verdict: Verdict | None = Field(
        default=None,
        description="The lineage-completeness suite's verdict on this run's records; None "
        "when the run computed nothing (every stage reused, so no new record to judge)",
    )

    @property
    def device_seconds(self) -> float:
        return sum(run.device_seconds for run in self.runs)

    @property
    def quality(self) -> str:
        """The quality verdicts in one line: segments accepted (and on which take), the
        deliverable and lineage suites, and the suite version."""
        segments = self.segment_verdicts
        if not segments and self.deliverable_verdict is None:
            return "not judged"
        retaken = [f"{i}: take {v.attempt}" for i, v in enumerate(segments) if v.attempt > 1]
        parts = [
            f"{len(segments)} segments accepted" + (f" ({', '.join(retaken)})" * bool(retaken))
        ]
        for name, verdict in (
            ("deliverable", self.deliverable_verdict),
            ("lineage", self.lineage_verdict),
        ):
            if verdict is not None:
                parts.append(f"{name} {'passed' if verdict.passed else 'FAILED'}")
        version = (segments[0] if segments else self.deliverable_verdict).suite_version
        return "; ".join(parts) + f" (suite version {version})"

    @property
    def verdict(self) -> str:
        if self.verified is None:
            return "not checked"
        return "VERIFIED" if self.verified else "NOT VERIFIED: " + "; ".join(self.problems)
