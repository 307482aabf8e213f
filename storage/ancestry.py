"""`factory lineage`: an asset's ancestry down to its renders, the models and who gets paid.

The royalty split weights each render's model routing by the seconds of video
that render contributed, so a deliverable made from two models splits by screen time.
"""

from collections import defaultdict

from pydantic import BaseModel

from factory.errors import IntegrityError
from factory.lineage import LineageRecord, ModelInfo, verify_record
from storage.keys import load_public_keys
from storage.lineage import RecordStore
from storage.objectstore import ObjectStore


class AncestryNode(BaseModel):
    digest: str
    stage: str
    media_type: str
    model: str | None = None
    parameters: dict = {}
    parents: list["AncestryNode"] = []


class RoyaltyLine(BaseModel):
    holder: str
    share: float
    seconds: float


class Ancestry(BaseModel):
    digest: str
    tree: AncestryNode
    models: list[ModelInfo]
    rendered_seconds: float
    royalties: list[RoyaltyLine]


def ancestry(store: ObjectStore, digest: str) -> Ancestry:
    """Read and verify the records of ``digest`` and every ancestor; summarise models and pay."""
    records = RecordStore(store)
    public_keys = load_public_keys(store)
    seen: dict[str, AncestryNode] = {}
    renders: dict[str, LineageRecord] = {}

    def load(current: str) -> AncestryNode:
        if current in seen:
            return seen[current]
        try:
            record = verify_record(records.read(current), public_keys, expected_digest=current)
        except IntegrityError as error:
            raise IntegrityError(
                f"lineage of {digest} is broken at {current}: {error}. "
                "Run `factory verify` for the full report"
            ) from None
        node = AncestryNode(
            digest=current,
            stage=record.stage.name,
            media_type=record.asset.media_type,
            model=record.model.name if record.model else None,
            parameters=record.parameters,
        )
        seen[current] = node
        if record.model is not None:
            renders[current] = record
        node.parents = [load(parent.digest) for parent in record.parents]
        return node

    tree = load(digest)
    return summarise(
        digest,
        tree,
        [(record.model, _seconds(record)) for record in renders.values() if record.model],
    )


def summarise(digest: str, tree: AncestryNode, renders: list[tuple[ModelInfo, float]]) -> Ancestry:
    """The ancestry with its models and royalty split, from each render's model and seconds.

    Shared by the store walk here and the warehouse's indexed query, so both answer alike.
    """
    models: dict[str, ModelInfo] = {}
    owed: dict[str, float] = defaultdict(float)
    total = 0.0
    for model, seconds in renders:
        models.setdefault(model.name, model)
        total += seconds
        for share in model.royalty_routing:
            owed[share.holder] += seconds * share.share
    royalties = [
        RoyaltyLine(holder=holder, share=seconds / total if total else 0.0, seconds=seconds)
        for holder, seconds in sorted(owed.items(), key=lambda item: -item[1])
    ]
    return Ancestry(
        digest=digest,
        tree=tree,
        models=list(models.values()),
        rendered_seconds=total,
        royalties=royalties,
    )


def _seconds(record: LineageRecord) -> float:
    frames = record.parameters.get("frames")
    fps = record.parameters.get("fps")
    if isinstance(frames, int) and isinstance(fps, int) and fps > 0:
        return frames / fps
    return 0.0
