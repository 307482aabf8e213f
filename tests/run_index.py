"""Reading a flow run's lineage index back, by its documented layout (storage/lineage.py)."""

from storage.lineage import run_index_prefix
from storage.objectstore import ObjectStore


def run_records(store: ObjectStore, flow_run_id: str) -> list[tuple[str, str]]:
    """(asset digest, record digest) of every producing record the run indexed."""
    prefix = run_index_prefix(flow_run_id)
    return [
        (key.removeprefix(prefix), store.get(key).decode("ascii"))
        for key in store.list(prefix)
        if not key.startswith(f"{prefix}reuses/")
    ]


def run_reuses(store: ObjectStore, flow_run_id: str) -> list[tuple[str, str]]:
    """(asset digest, reuse record digest) of every reuse the run indexed."""
    prefix = f"{run_index_prefix(flow_run_id)}reuses/"
    return [
        (store.get(key).decode("ascii"), key.removeprefix(prefix)) for key in store.list(prefix)
    ]
