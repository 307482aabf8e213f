"""A store that accepts connections but never answers: the run gives up in bounded time,
names the endpoint in one line, and a rerun against a live store completes cleanly."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.errors import StoreTimedOut
from storage.s3 import S3Store
from tests.hung_proxy import hung_proxy

pytestmark = [pytest.mark.s3]

EXAMPLES = Path(__file__).parent.parent / "examples"
# Small timeouts so the test is quick; a call then gives up after 2 x (1 + 2) s.
TIMEOUTS = {
    "FACTORY_STORE_CONNECT_TIMEOUT_S": "1",
    "FACTORY_STORE_READ_TIMEOUT_S": "2",
    "FACTORY_STORE_ATTEMPTS": "2",
}


def test_a_hung_store_call_times_out_and_names_the_endpoint(s3_env):
    bucket = s3_env.make_bucket()
    with hung_proxy(s3_env.endpoint_url) as proxy:
        store = S3Store(
            bucket, endpoint_url=proxy.endpoint_url, read_timeout=1, connect_timeout=1,
            max_attempts=2,
        )  # fmt: skip
        store.put("before", b"answered")
        proxy.hung.set()
        started = time.monotonic()
        with pytest.raises(StoreTimedOut, match=proxy.endpoint_url) as timed_out:
            store.get("before")
        # Two attempts of a 1 s read timeout, plus back-off: nowhere near a minute.
        assert time.monotonic() - started < 10
    assert "FACTORY_STORE_READ_TIMEOUT_S" in str(timed_out.value)


def _factory(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    """Exit code, output, and when (time.monotonic) the process ended."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "factory"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, time.monotonic()


@pytest.mark.slow
def test_a_store_hung_mid_run_fails_fast_and_the_rerun_completes(s3_env, factory_home, tmp_path):
    bucket = s3_env.make_bucket()
    store = f"s3://{bucket}/p"
    env = {**os.environ, **TIMEOUTS, "FACTORY_HOME": str(factory_home), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    args = ["run", str(EXAMPLES / "tiny.yaml"), "--store", store, "--out", "tiny.mp4"]
    with hung_proxy(s3_env.endpoint_url) as proxy:
        # The store stops answering at the first lineage record: an asset is stored,
        # its record is not.
        proxy.hang_on = b"/lineage/records/"
        code, output, ended = _factory(
            args, {**env, "AWS_ENDPOINT_URL": proxy.endpoint_url}, tmp_path
        )
        assert proxy.hung.is_set()
    assert code == 1, output
    # From the moment the store stopped answering to the exit: a few 2 x (1 + 2) s calls
    # (the record write, the failed run's result), not the 6 minutes it used to hold on.
    assert proxy.hung_at is not None and ended - proxy.hung_at < 45, output
    assert f"The S3 endpoint {proxy.endpoint_url}" in output
    assert "did not answer in time" in output
    # One useful line, not pages of tracebacks.
    assert "Traceback" not in output
    assert len(output.splitlines()) < 30, output

    code, output, _ = _factory(args, {**env, "AWS_ENDPOINT_URL": s3_env.endpoint_url}, tmp_path)
    assert code == 0, output
    live = S3Store(bucket, "p", endpoint_url=s3_env.endpoint_url)
    assets = {key.rsplit("/", 1)[1] for key in live.list("assets/sha256/")}
    recorded = {
        key.rsplit("/", 1)[1].removesuffix(".dsse.json") for key in live.list("lineage/records/")
    }
    # Nothing half-done is left: every stored asset has its signed record.
    assert assets <= recorded
    live_env = {**env, "AWS_ENDPOINT_URL": s3_env.endpoint_url}
    code, output, _ = _factory(["verify", "tiny.mp4", "--store", store], live_env, tmp_path)
    assert code == 0, output
