"""`factory lineage`: an asset's ancestry down to its renders, the models and who gets paid.

The royalty split weights each render's model routing by the seconds of video
that render contributed, so a deliverable made from two models splits by screen time.
"""

from collections import defaultdict

from pydantic import BaseModel

from factory.errors import IntegrityError
from factory.lineage import ModelInfo
from storage.lineage_reader import LineageNode, LineageReader
from storage.objectstore import ObjectStore
from storage.trust import TrustedKeys


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


def ancestry(store: ObjectStore, trusted: TrustedKeys, digest: str) -> Ancestry:
    """Read and verify the records of ``digest`` and every ancestor; summarise models and pay."""
    graph = LineageReader(store, trusted).walk(digest)
    broken = next((node for node in graph.seen.values() if node.problems), None)
    if broken is not None:
        raise IntegrityError(
            f"lineage of {digest} is broken at {broken.digest}: {broken.problems[0]}. "
            "Run `factory verify` for the full report"
        )
    assert graph.root is not None
    renders = [node.record for node in graph.verified if node.record and node.record.model]
    return summarise(
        digest,
        _tree(graph.root),
        [(record.model, render_seconds(record.parameters)) for record in renders if record.model],
    )


def _tree(node: LineageNode) -> AncestryNode:
    assert node.record is not None
    return AncestryNode(
        digest=node.digest,
        stage=node.record.stage.name,
        media_type=node.record.asset.media_type,
        model=node.model,
        parameters=node.record.parameters,
        parents=[_tree(parent) for parent in node.parents],
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


def render_seconds(parameters: dict) -> float:
    """Seconds of video a render made (``frames / fps`` of its parameters), else 0."""
    frames = parameters.get("frames")
    fps = parameters.get("fps")
    if isinstance(frames, int) and isinstance(fps, int) and fps > 0:
        return frames / fps
    return 0.0
