"""Bad input through the `factory` command: exit code, a message that teaches, nothing written."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup, TyperOption

from cli import main as cli

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["factory", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, " ".join((captured.out + captured.err).split())


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACTORY_STORE", raising=False)
    monkeypatch.delenv("FACTORY_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_order(tmp_path: Path, **changes) -> Path:
    order = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    order["composite"]["logo"] = str(EXAMPLES / "logo.png")
    for dotted, value in changes.items():
        target = order
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[leaf] = value
    path = tmp_path / "order.yaml"
    path.write_text(yaml.safe_dump(order, allow_unicode=True))
    return path


def assert_nothing_written(store: Path) -> None:
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_invalid_field(env, monkeypatch, capsys):
    order = write_order(env, **{"segments.0.duration_s": 0})
    code, text = run_cli(monkeypatch, capsys, "run", str(order), "--store", str(env / "s"))
    assert code == 2
    assert "segments.0.duration_s: Input should be greater than 0 (got 0)" in text
    assert_nothing_written(env / "s")


def test_unknown_model(env, monkeypatch, capsys):
    order = write_order(env, **{"segments.1.model": "sora-9"})
    code, text = run_cli(monkeypatch, capsys, "run", str(order), "--store", str(env / "s"))
    assert code == 2
    assert "unknown model 'sora-9'; known models: tiny" in text
    assert_nothing_written(env / "s")


def test_missing_model_weights(env, monkeypatch, capsys):
    registry = env / "models.toml"
    registry.write_text(
        (EXAMPLES / "models.toml").read_text().replace("/srv/models/studio-ltx", str(env / "gone"))
    )
    order = write_order(env, **{"segments.0.model": "studio-local"})
    code, text = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(order),
        "--store",
        str(env / "s"),
        "--registry",
        str(registry),
    )
    assert code == 2
    assert f"looked for {env / 'gone' / 'model_index.json'}" in text
    assert_nothing_written(env / "s")


def test_unwritable_store(env, monkeypatch, capsys):
    (env / "file").write_text("not a directory")
    order = write_order(env)
    code, text = run_cli(monkeypatch, capsys, "run", str(order), "--store", str(env / "file" / "s"))
    assert code == 1
    assert str(env / "file" / "s") in text


@pytest.mark.s3
def test_unreachable_s3_endpoint(env, monkeypatch, capsys, aws_env):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    order = write_order(env)
    code, text = run_cli(monkeypatch, capsys, "run", str(order), "--store", "s3://bucket/p")
    assert code == 1
    assert f"127.0.0.1:{port}" in text


def test_corrupt_order_file(env, monkeypatch, capsys):
    path = env / "order.json"
    path.write_text('{"id": "x", "segments": [')
    code, text = run_cli(monkeypatch, capsys, "run", str(path), "--store", str(env / "s"))
    assert code == 2
    assert "order.json is not valid json" in text
    assert_nothing_written(env / "s")


def test_missing_order_file(env, monkeypatch, capsys):
    code, text = run_cli(monkeypatch, capsys, "run", str(env / "nope.yaml"))
    assert code == 2
    assert "nope.yaml does not exist" in text


def test_missing_logo(env, monkeypatch, capsys):
    order = write_order(env, **{"composite.logo": str(env / "no-logo.png")})
    code, text = run_cli(monkeypatch, capsys, "run", str(order), "--store", str(env / "s"))
    assert code == 2
    assert "composite.logo" in text
    assert "no-logo.png" in text
    assert_nothing_written(env / "s")


def test_malformed_s3_url(env, monkeypatch, capsys):
    code, text = run_cli(monkeypatch, capsys, "run", str(write_order(env)), "--store", "s3://")
    assert code == 2
    assert "s3://" in text


def test_royalties_that_do_not_sum_to_one(env, monkeypatch, capsys):
    registry = env / "models.toml"
    registry.write_text(
        (EXAMPLES / "models.toml").read_text().replace("share = 0.4", "share = 0.3")
    )
    code, text = run_cli(monkeypatch, capsys, "models", "--registry", str(registry))
    assert code == 2
    assert "sum to 0.9; they must sum to 1" in text


def test_models_lists_the_registry(env, monkeypatch, capsys):
    code, text = run_cli(monkeypatch, capsys, "models", "--registry", str(EXAMPLES / "models.toml"))
    assert code == 0
    for fragment in ("tiny", "wan-1_3b", "Wan-AI 60%", "stock-footage-collective 40%"):
        assert fragment in text


def _commands(group: TyperGroup, path: list[str]) -> list[tuple[list[str], Any]]:
    found: list[tuple[list[str], Any]] = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found += _commands(command, [*path, name])
        else:
            found.append(([*path, name], command))
    return found


def test_help_explains_every_command(env, monkeypatch, capsys):
    commands = _commands(typer.main.get_command(cli.app), [])
    # run, verify, lineage, models; cache stats, gc; floor ingest, report, export; keys init,
    # rotate, list
    assert len([path for path, command in commands if not isinstance(command, TyperGroup)]) >= 12
    for path, command in commands:
        code, text = run_cli(monkeypatch, capsys, *path, "--help")
        assert code == 0, path
        summary = " ".join((command.help or "").split(".")[0].split())
        assert summary, f"`factory {' '.join(path)}` has no help text"
        assert summary in text, path
        for parameter in command.params:
            if isinstance(parameter, TyperOption) and parameter.help:
                assert parameter.opts[0] in text, (path, parameter.opts)


def test_the_command_line_starts_without_duckdb_matplotlib_or_great_expectations():
    # `factory --help` (and every command that does not need them) must not pay for
    # importing the warehouse's engine, the report's charts or the quality suites (GX alone
    # takes seconds): they load on use.
    heavy = ("duckdb", "matplotlib", "jinja2", "great_expectations", "pandas")
    probe = f"import sys, cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]"]


def test_version_completion_and_flags_shown_as_flags(env, monkeypatch, capsys):
    code, text = run_cli(monkeypatch, capsys, "--version")
    assert code in (0, None) and text.startswith("factory ")
    code, text = run_cli(monkeypatch, capsys, "--help")
    assert "--install-completion" in text and "--show-completion" in text
    code, text = run_cli(monkeypatch, capsys, "verify", "--help")
    assert "--json Print the report as JSON" in text
    assert "<bool>" not in text


@pytest.mark.parametrize(
    "command", [["models"], ["cache", "stats"], ["keys", "list"], ["assets", "put", "--help"]]
)
def test_read_commands_print_json(env, monkeypatch, capsys, command):
    import json

    if command[0] in ("keys", "cache"):
        run_cli(monkeypatch, capsys, "keys", "init", "--store", str(env / "s"))
    if command[-1] == "--help":
        _code, text = run_cli(monkeypatch, capsys, *command)
        assert "--json" in text
        return
    extra = [] if command == ["models"] else ["--store", str(env / "s")]
    monkeypatch.setattr(sys, "argv", ["factory", *command, *extra, "--json"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)
