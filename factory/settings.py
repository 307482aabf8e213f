"""Settings from the environment (FACTORY_*), with defaults that work on a fresh machine."""

import socket
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".cache" / "asset-factory"


class StoreTimeouts(BaseModel):
    """How long an S3 store call may wait: per connection, per silent read, and tries."""

    connect_s: float = Field(default=5.0, gt=0)
    read_s: float = Field(default=15.0, gt=0)
    attempts: int | None = Field(default=None, ge=1, le=10)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACTORY_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Where the factory keeps built models and the default local store",
    )
    store: str | None = Field(
        default=None, description="Object store: a directory or s3://bucket/prefix"
    )
    task_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Threads that run tasks concurrently; default 1 on CPU-only hosts, 4 with CUDA",
    )
    trust: str | None = Field(
        default=None,
        description="The root verifiers trust: its fingerprint or trust file; default the "
        "local factory's own root",
    )
    store_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to an S3 store"
    )
    store_read_timeout_s: float = Field(
        default=15.0, gt=0, description="Seconds an S3 store may stay silent on one request"
    )
    store_attempts: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Tries per S3 store call, the first included (default AWS_MAX_ATTEMPTS, "
        "else 3); a hung store fails a call after at most attempts x (connect + read timeout)",
    )
    worker_name: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="This worker's name on the floor; with the host it makes the worker id",
    )
    registry: Path | None = Field(
        default=None, description="Extra model registry (TOML) merged over the built-in one"
    )
    qc_thresholds: Path | None = Field(
        default=None,
        description="The quality gate's thresholds (TOML, versioned); default the built-in "
        "quality/thresholds.toml",
    )
    ingest_cached_runs: bool = Field(
        default=False,
        description="Also load a run that computed nothing (every stage reused from the cache) "
        "into the floor warehouse at its end. By default its floor events wait in the store "
        "for the next ingest (a run that computes, `factory floor ingest`, the nightly floor "
        "report), and its floor artifact says so: that keeps a cached re-run about 1.5 CPU "
        "seconds (the warehouse's first touch, ingest and summary) shorter",
    )
    local_server: bool = Field(
        default=True,
        description="`factory run` talks to the factory's own long-lived Prefect server "
        "(started on first use); false: a throwaway API inside each run, as CI may want",
    )
    server_start_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds to wait for the local Prefect server to answer after starting it "
        "(a fresh database on a loaded 2-core machine takes 20 s or more)",
    )
    warehouse_catalog: str | None = Field(
        default=None,
        description="The floor warehouse's DuckLake catalog: a SQLite file (sqlite:PATH) or "
        "PostgreSQL (postgres:CONNINFO, for a fleet); default sqlite:$FACTORY_HOME/floor/"
        "catalog.sqlite",
    )
    warehouse_data: str | None = Field(
        default=None,
        description="Where the warehouse writes its Parquet files: a directory or "
        "s3://bucket/prefix/; default the store's warehouse/ prefix. Fixed when the "
        "catalog is created",
    )

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def qc_docs_dir(self) -> Path:
        """Great Expectations Data Docs of each judged run, one folder per flow run."""
        return self.home / "qc-docs"

    @property
    def server_dir(self) -> Path:
        """The local Prefect server's state, log and SQLite database."""
        return self.home / "server"

    @property
    def warehouse(self) -> tuple[str, str]:
        """The warehouse's catalog and data path (see storage.warehouse.WarehouseLocation)."""
        catalog = self.warehouse_catalog or f"sqlite:{self.home / 'floor' / 'catalog.sqlite'}"
        data = self.warehouse_data or f"{self.store_spec.rstrip('/')}/warehouse/"
        return catalog, data

    @property
    def legacy_warehouse(self) -> Path:
        """Where the single-file warehouse lived before DuckLake."""
        return self.home / "floor.duckdb"

    @property
    def worker_id(self) -> str:
        """``host:name``: stable across runs and restarts, unlike a process id."""
        return f"{socket.gethostname()}:{self.worker_name}"

    @property
    def store_timeouts(self) -> StoreTimeouts:
        return StoreTimeouts(
            connect_s=self.store_connect_timeout_s,
            read_s=self.store_read_timeout_s,
            attempts=self.store_attempts,
        )

    @property
    def store_spec(self) -> str:
        return self.store or str(self.home / "store")
