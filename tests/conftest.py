import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect reads its settings when first imported; no telemetry from tests.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# `factory run` in a test (and the processes tests start) uses the session's Prefect
# harness or its own ephemeral API, never a long-lived server left behind in a
# FACTORY_HOME; tests/test_local_server.py turns it on where it is the subject.
os.environ.setdefault("FACTORY_LOCAL_SERVER", "false")

from tests.s3server import ACCESS_KEY, SECRET_KEY, SeaweedFS, running_seaweedfs


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole session; tests isolate themselves with make_bucket()."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS settings for test servers only: their keys, no profile, no ~/.aws, no endpoint."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The shared SeaweedFS, found the standard way: through AWS_ENDPOINT_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    return seaweedfs


@pytest.fixture(scope="session")
def factory_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FACTORY_HOME per session, so the tiny model is built once and shared by every test."""
    home = tmp_path_factory.mktemp("factory-home")
    from media.tinymodel import ensure_tiny_model

    ensure_tiny_model(home / "models")
    return home


@pytest.fixture(scope="session")
def prefect_server(factory_home: Path) -> Iterator[None]:
    """One temporary Prefect API for the session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flow_env(prefect_server: None, factory_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    monkeypatch.delenv("FACTORY_STORE", raising=False)
    monkeypatch.delenv("FACTORY_REGISTRY", raising=False)
    return factory_home
