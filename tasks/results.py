"""Flow-run results persisted in the factory's own store, where API callers read them.

Prefect writes a flow run's result through a result-storage block and records the block's
id and the object's key in the run's state (``state.data``). The block here writes into the
factory's object store (a directory or an S3 bucket, under ``results/``), so a result
lives beside the assets it names; it is saved on the Prefect server once per store, so any
process that imports this module can read results back (``State.result()``,
``run_deployment``). Results are JSON, readable without Python.
"""

import asyncio
import hashlib

from prefect.blocks.core import Block
from prefect.filesystems import WritableFileSystem
from pydantic import Field

from factory.settings import StoreTimeouts
from storage.open import open_store

RESULTS_PREFIX = "results"


class StoreResults(WritableFileSystem):
    """Prefect result storage in an asset-factory store (a directory or s3://bucket/prefix)."""

    _block_type_name = "Asset factory store results"
    _block_type_slug = "asset-factory-store-results"
    _description = "Flow-run results in the asset factory's object store, under results/"

    store: str = Field(description="The factory store: a directory or s3://bucket/prefix")
    timeouts: StoreTimeouts = Field(
        default_factory=StoreTimeouts, description="How long an S3 store call may wait"
    )
    prefix: str = Field(default=RESULTS_PREFIX, description="Key prefix inside the store")

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path.lstrip('/')}"

    async def read_path(self, path: str) -> bytes:
        return await asyncio.to_thread(
            lambda: open_store(self.store, self.timeouts).get(self._key(path))
        )

    async def write_path(self, path: str, content: bytes) -> str:
        await asyncio.to_thread(
            lambda: open_store(self.store, self.timeouts).put(
                self._key(path), content, "application/json"
            )
        )
        return path


def block_name(store_url: str) -> str:
    """The saved block's name for a store: stable, and a valid Prefect block name."""
    return "factory-results-" + hashlib.sha256(store_url.encode()).hexdigest()[:16]


def store_results(store_url: str, timeouts: StoreTimeouts) -> StoreResults:
    """The result storage for ``store_url``, saved on the Prefect server (idempotent).

    A block saved earlier with the same fields is loaded instead: one API call where
    saving again registers the block type and schema and writes the document (about
    0.3 s of a fully cached run).
    """
    block = StoreResults(store=store_url, timeouts=timeouts)
    name = block_name(store_url)
    # Sync even inside an event loop: `prefect deploy` imports the entry points from one, and
    # there a plain `load` or `save` returns a coroutine that nobody awaits.
    try:
        saved = StoreResults.load(name, _sync=True)
    except ValueError:
        saved = None
    # Our own fields only: a loaded block's dump also carries its document's id and name.
    ours = StoreResults.model_fields.keys() - Block.model_fields.keys()
    if saved is not None and saved.model_dump(include=ours) == block.model_dump(include=ours):
        return saved
    block.save(name, overwrite=True, _sync=True)
    return block
