"""`factory run`, `verify` and `lineage` from the command line, with two models in one order."""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_cli import run_cli

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"

SPLIT_MODEL = """
[models.tiny-licensed]
builtin = "tiny-wan-v1"
pipeline_class = "WanPipeline"
default_steps = 4
render_width = 192
render_height = 96

[[models.tiny-licensed.training_provenance]]
source = "studio archive, licensed"

[[models.tiny-licensed.royalty_routing]]
holder = "studio archive"
share = 0.75

[[models.tiny-licensed.royalty_routing]]
holder = "asset-factory maintainers"
share = 0.25
"""


@pytest.fixture(scope="module")
def produced(factory_home, tmp_path_factory):
    """One real `factory run` in its own process, as a user would type it."""
    where = tmp_path_factory.mktemp("cli-run")
    registry = where / "models.toml"
    registry.write_text(SPLIT_MODEL)
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    order["composite"]["logo"] = str(EXAMPLES / "logo.png")
    order["segments"][1]["model"] = "tiny-licensed"
    (where / "order.yaml").write_text(yaml.safe_dump(order))
    store = str(where / "store")
    env = {**os.environ, "FACTORY_HOME": str(factory_home), "FACTORY_REGISTRY": str(registry)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "factory"), "run", "order.yaml", "--store", store,
         "--out", "tiny.mp4", "--json"],
        cwd=where, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    delivery = json.loads(done.stdout)
    assert delivery["path"] == "tiny.mp4"
    assert delivery["duration_s"] == pytest.approx(2.0)
    return where, store


@pytest.fixture
def cli_env(produced, monkeypatch, factory_home):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    return produced


def test_verify_a_clean_file_exits_zero(cli_env, monkeypatch, capsys):
    where, store = cli_env
    code, text = run_cli(monkeypatch, capsys, "verify", str(where / "tiny.mp4"), "--store", store)
    assert code == 0
    assert "VERIFIED" in text
    assert "NOT VERIFIED" not in text


def test_verify_a_tampered_file_exits_one_with_the_reason(cli_env, monkeypatch, capsys):
    where, store = cli_env
    data = bytearray((where / "tiny.mp4").read_bytes())
    data[data.index(b"mdat") + 100] ^= 0x01
    (where / "bad.mp4").write_bytes(bytes(data))
    code, text = run_cli(
        monkeypatch, capsys, "verify", str(where / "bad.mp4"), "--store", store, "--json"
    )
    assert code == 1
    report = json.loads(text)
    assert report["verified"] is False
    assert any("bmffHash.mismatch" in problem for problem in report["problems"])


def test_lineage_splits_royalties_by_rendered_seconds(cli_env, monkeypatch, capsys):
    where, store = cli_env
    code, text = run_cli(
        monkeypatch, capsys, "lineage", str(where / "tiny.mp4"), "--store", store, "--json"
    )
    assert code == 0
    result = json.loads(text)
    assert {model["name"] for model in result["models"]} == {"tiny", "tiny-licensed"}
    assert result["rendered_seconds"] == pytest.approx(2.0)
    shares = {line["holder"]: line["share"] for line in result["royalties"]}
    # 1 s fully to the maintainers, 1 s split 75/25: 1.25 s and 0.75 s of 2 s.
    assert shares == pytest.approx({"asset-factory maintainers": 0.625, "studio archive": 0.375})


def _trust(factory_home: Path) -> str:
    from storage import keys

    return f"sha256:{keys.root_fingerprint(factory_home / 'keys')}"


def test_a_verifier_without_the_factory_pins_its_root(
    cli_env, factory_home, monkeypatch, capsys, tmp_path
):
    where, store = cli_env
    trusted = _trust(factory_home)
    # A verifier's machine: no factory keys of its own, only the fingerprint it was handed.
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "verifier"))
    code, text = run_cli(monkeypatch, capsys, "verify", str(where / "tiny.mp4"), "--store", store)
    assert code != 0
    assert "No trust anchor" in text and "--trust" in text
    code, text = run_cli(
        monkeypatch, capsys, "verify", str(where / "tiny.mp4"), "--store", store, "--trust", trusted
    )
    assert code == 0, text
    assert "VERIFIED" in text and f"trusted root {trusted}" in text
    code, text = run_cli(
        monkeypatch,
        capsys,
        "lineage",
        str(where / "tiny.mp4"),
        "--store",
        store,
        "--trust",
        trusted,
    )
    assert code == 0, text
    # A swapped root: the fingerprint of some other factory.
    other = _trust(_other_factory(tmp_path))
    code, text = run_cli(
        monkeypatch, capsys, "verify", str(where / "tiny.mp4"), "--store", store, "--trust", other
    )
    assert code != 0
    assert f"does not publish the trusted root {other.removeprefix('sha256:')}" in text


def _other_factory(tmp_path: Path) -> Path:
    from storage import keys

    keys.init(tmp_path / "other" / "keys")
    return tmp_path / "other"


def _forged_copy(store: str, tmp_path: Path) -> Path:
    """A copy of the store with an intruder's key planted and the deliverable's chain
    re-signed with it, royalties and all."""
    from storage import keys
    from storage.local import LocalStore
    from tests.trusted import forge_chain

    copy = tmp_path / "forged"
    shutil.copytree(store, copy)
    keys.init(tmp_path / "intruder")
    keys.publish_public_keys(tmp_path / "intruder", LocalStore(copy))
    intruder = keys.load_signer(tmp_path / "intruder")
    deliverable = hashlib.sha256((Path(store).parent / "tiny.mp4").read_bytes()).hexdigest()
    forge_chain(LocalStore(copy), deliverable, intruder)
    return copy


def test_the_forged_key_attack_fails_verify_and_lineage(cli_env, monkeypatch, capsys, tmp_path):
    where, store = cli_env
    forged = _forged_copy(store, tmp_path)
    intruder = next((forged / "keys" / "lineage").glob("*.pem"), None)
    assert intruder is not None
    code, text = run_cli(
        monkeypatch, capsys, "verify", str(where / "tiny.mp4"), "--store", str(forged)
    )
    assert code == 1
    assert "NOT VERIFIED" in text
    assert "untrusted key" in text
    code, text = run_cli(
        monkeypatch, capsys, "lineage", str(where / "tiny.mp4"), "--store", str(forged)
    )
    assert code != 0
    assert "untrusted key" in text


def test_a_verifier_outside_the_factory_checks_the_deliverable(cli_env, factory_home, tmp_path):
    """examples/verify_independently.py: securesystemslib and c2pa-python, no factory code."""
    where, store = cli_env
    script = EXAMPLES / "verify_independently.py"
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & {"factory", "storage", "media", "tasks", "flows", "cli"}

    def check(store_dir: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(where / "tiny.mp4"), "--store", store_dir,
             "--root", _trust(factory_home)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    clean = check(store)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().endswith("VERIFIED")
    forged = check(str(_forged_copy(store, tmp_path)))
    assert forged.returncode == 1, forged.stdout + forged.stderr
    assert "signed by uncertified key(s)" in forged.stdout
    assert forged.stdout.strip().endswith("NOT VERIFIED")
