"""`factory qc`: exit codes, the human and JSON reports, targets, store digests, Data Docs."""

import json
import sys
from pathlib import Path

import pytest
import yaml

import cli.main as cli
from storage.assets import put_asset
from storage.local import LocalStore
from tests import quality_clips as clips


def run_qc(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stdout and stderr with whitespace collapsed)."""
    monkeypatch.setattr(sys, "argv", ["factory", "qc", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, " ".join((captured.out + captured.err).split())


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACTORY_STORE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def normal(env) -> Path:
    path = env / "normal.mp4"
    path.write_bytes(clips.normal())
    return path


@pytest.fixture
def black(env) -> Path:
    path = env / "black.mp4"
    path.write_bytes(clips.black(12, 30))
    return path


def write_order(directory: Path, *seconds: float) -> Path:
    segments = [
        {"prompt": "p", "duration_s": length, "fps": clips.FPS}
        | {"width": clips.WIDTH, "height": clips.HEIGHT}
        for length in seconds
    ]
    path = directory / "order.yaml"
    path.write_text(yaml.safe_dump({"id": "qc-order", "segments": segments}))
    return path


def test_a_good_file_passes_against_its_own_size(monkeypatch, capsys, normal):
    code, _, text = run_qc(monkeypatch, capsys, str(normal))
    assert code == 0
    assert "PASSED segment suite, thresholds version 1" in text
    assert "the file's own width, height, fps, duration" in text and "pass trivially" in text
    assert "black_share 0 ≤ 0.1" in text


def test_a_black_file_fails_with_exit_1_naming_the_expectation(monkeypatch, capsys, black):
    code, _, text = run_qc(monkeypatch, capsys, str(black))
    assert code == 1
    assert "FAILED segment suite" in text
    assert "✗ black_share 0.375, expected ≤ 0.1 (expect_column_values_to_be_between)" in text


def test_json_report(monkeypatch, capsys, black):
    code, out, _ = run_qc(monkeypatch, capsys, str(black), "--width", "320", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["file"] == str(black)
    assert report["target"].startswith("the options given and the file's own height")
    verdict = report["verdict"]
    assert verdict["passed"] is False and verdict["suite"] == "segment"
    failures = {failure["metric"]: failure for failure in verdict["failures"]}
    assert failures["width"]["observed"] == clips.WIDTH
    assert failures["width"]["expected"] == {"equal_to": "target_width", "value": 320}
    assert failures["black_share"]["observed"] == pytest.approx(0.375)
    assert verdict["metrics"]["target_width"] == 320


def test_wrong_duration_from_the_options(monkeypatch, capsys, normal):
    code, _, text = run_qc(
        monkeypatch, capsys, str(normal), "--width", "160", "--height", "96", "--fps", "12",
        "--duration", "5",
    )  # fmt: skip
    assert code == 1
    assert "target the options given" in text
    assert "✗ frames 48, expected = 60" in text


def test_against_an_order_segment_and_the_deliverable(monkeypatch, capsys, env, normal):
    order = write_order(env, 1, 4)
    code, _, text = run_qc(
        monkeypatch, capsys, str(normal), "--order", str(order), "--segment", "1"
    )
    assert code == 0 and "order qc-order: segment 1" in text
    code, _, text = run_qc(
        monkeypatch, capsys, str(normal), "--order", str(order), "--segment", "0"
    )
    assert code == 1 and "✗ frames 48, expected = 12" in text
    deliverable = env / "deliverable.mp4"
    deliverable.write_bytes(clips.joined(12, 48))
    code, _, text = run_qc(monkeypatch, capsys, str(deliverable), "--order", str(order))
    assert code == 0, text
    assert "PASSED deliverable suite" in text and "segment_count 2 = 2" in text
    code, _, text = run_qc(monkeypatch, capsys, str(normal), "--order", str(order))
    assert code == 1 and "✗ segment_count 1, expected = 2" in text


def test_a_digest_is_read_from_the_store(monkeypatch, capsys, env):
    store = LocalStore(env / "store")
    digest = put_asset(store, clips.normal(), "video/mp4").digest
    code, _, text = run_qc(monkeypatch, capsys, f"sha256:{digest}", "--store", str(env / "store"))
    assert code == 0 and f"file sha256:{digest}" in text
    missing = "0" * 64
    code, _, text = run_qc(monkeypatch, capsys, f"sha256:{missing}", "--store", str(env / "store"))
    assert code == 1 and f"asset sha256:{missing} is not in the store" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing-here.mp4"], "is neither a file nor an asset digest"),
        (["{clip}", "--segment", "0"], "--segment needs --order"),
        (["{clip}", "--order", "{order}", "--fps", "12"], "--order and --fps exclude each other"),
        (["{clip}", "--order", "{order}", "--segment", "5"], "there is no segment 5"),
        (["{clip}", "--thresholds", "missing.toml"], "do not exist"),
    ],
)
def test_bad_input_exits_2_with_a_reason(monkeypatch, capsys, env, normal, args, message):
    order = write_order(env, 4)
    args = [arg.format(clip=normal, order=order) for arg in args]
    code, _, text = run_qc(monkeypatch, capsys, *args)
    assert code == 2 and message in text


def test_a_file_that_is_not_video_fails(monkeypatch, capsys, env):
    (env / "notes.mp4").write_text("not a video")
    code, _, text = run_qc(monkeypatch, capsys, str(env / "notes.mp4"))
    assert code == 1 and "not a readable video container" in text


def test_docs_are_written(monkeypatch, capsys, env, black):
    code, _, text = run_qc(monkeypatch, capsys, str(black), "--docs", str(env / "docs"))
    assert code == 1
    assert (env / "docs" / "index.html").is_file()
    assert f"data docs {env / 'docs' / 'index.html'}" in text
    assert len(list((env / "docs" / "validations").rglob("*.html"))) == 1
