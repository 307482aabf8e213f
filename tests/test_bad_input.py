"""Bad input is refused before anything runs, and nothing of it is stored (issue 10).

Every case goes through `factory run` against an empty local store and checks the exit
code, that the message is short, and that the store is still empty afterwards.
"""

import io
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cli import main as cli
from tests.test_cli import write_order
from tests.test_orders import BILLION_LAUGHS

EXAMPLES = Path(__file__).parent.parent / "examples"
# Whitespace-collapsed stdout and stderr of a refused run stay below this many characters.
SHORT = 1500


@pytest.fixture
def env(monkeypatch, tmp_path, factory_home):
    """A working directory with an empty store beside it; the session's built tiny model."""
    monkeypatch.setenv("FACTORY_HOME", str(factory_home))
    monkeypatch.delenv("FACTORY_STORE", raising=False)
    monkeypatch.delenv("FACTORY_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(monkeypatch, capsys, env: Path, order: Path, *extra: str) -> str:
    """Run `factory run ORDER --store env/s …`; assert exit 2, a short message, nothing stored."""
    monkeypatch.setattr(sys, "argv", ["factory", "run", str(order), "--store", "s", *extra])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert exited.value.code == 2, text[:2000]
    assert len(text) < SHORT, f"{len(text)} characters of error: {text[:300]}…"
    store = env / "s"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    assert not (env / "out").exists()
    return text


def image_file(path: Path, fmt: str = "PNG", size: tuple[int, int] = (40, 40)) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return path


# Order files


@pytest.mark.timeout(60)
def test_alias_bomb(env, monkeypatch, capsys):
    path = env / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert "YAML aliases and merge keys" in refused(monkeypatch, capsys, env, path)


def test_order_file_too_large(env, monkeypatch, capsys):
    path = write_order(env)
    path.write_text(path.read_text() + "# padding\n" * 120_000)
    assert "larger than 1024 KiB" in refused(monkeypatch, capsys, env, path)


def test_501_segments(env, monkeypatch, capsys):
    segments = [
        {"prompt": "a lighthouse at dusk " * 4, "duration_s": 1, "seed": i} for i in range(501)
    ]
    path = env / "long.yaml"
    path.write_text(yaml.safe_dump({"id": "long", "segments": segments}))
    text = refused(monkeypatch, capsys, env, path)
    assert "segments: List should have at most 500 items" in text


@pytest.mark.parametrize("field", ["fps", "duration_s", "width", "seed"])
def test_booleans_are_not_numbers(env, monkeypatch, capsys, field):
    text = refused(monkeypatch, capsys, env, write_order(env, **{f"segments.0.{field}": True}))
    assert f"segments.0.{field}: must be a number, not true or false" in text


# Images


def test_text_file_named_png_as_logo(env, monkeypatch, capsys):
    junk = env / "logo.png"
    junk.write_text("this is not a picture\n")
    text = refused(monkeypatch, capsys, env, write_order(env, **{"composite.logo": str(junk)}))
    assert f"composite.logo {junk} is not a PNG or JPEG image" in text


def test_text_file_named_png_as_background(env, monkeypatch, capsys):
    junk = env / "bg.png"
    junk.write_text("GIF89a or so")
    order = write_order(env, **{"composite.background_image": str(junk)})
    assert "composite.background_image" in refused(monkeypatch, capsys, env, order)


def test_sparse_gigabyte_background_is_refused_unread(env, monkeypatch, capsys):
    huge = env / "huge.png"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)
    order = write_order(env, **{"composite.background_image": str(huge)})
    text = refused(monkeypatch, capsys, env, order)
    assert "is 1024.0 MiB; input images may be at most 20.0 MiB" in text


def test_image_over_the_pixel_limit(env, monkeypatch, capsys):
    wide = image_file(env / "wide.png", size=(9000, 8))
    text = refused(monkeypatch, capsys, env, write_order(env, **{"composite.logo": str(wide)}))
    assert "9000×8 pixels" in text


def test_truncated_png(env, monkeypatch, capsys):
    path = env / "cut.png"
    Image.effect_noise((300, 300), 80).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    text = refused(monkeypatch, capsys, env, write_order(env, **{"composite.logo": str(path)}))
    assert "is not a readable PNG or JPEG image" in text


def test_jpeg_named_png(env, monkeypatch, capsys):
    path = image_file(env / "photo.png", fmt="JPEG")
    text = refused(monkeypatch, capsys, env, write_order(env, **{"composite.logo": str(path)}))
    assert "holds JPEG data but is named .png" in text


def test_gif_named_png(env, monkeypatch, capsys):
    path = image_file(env / "anim.png", fmt="GIF")
    text = refused(monkeypatch, capsys, env, write_order(env, **{"composite.logo": str(path)}))
    assert "is not a PNG or JPEG image" in text


# Captions


def test_caption_without_glyphs(env, monkeypatch, capsys):
    order = write_order(env, **{"composite.captions": ["Lighthouse", "東京の灯台"]})
    text = refused(monkeypatch, capsys, env, order)
    assert "composite.captions.1" in text
    assert "'東' (U+6771)" in text


# Store and output


@pytest.mark.parametrize("spec", ["s3:/bucket", "s3:bucket/p", "gs://bucket", "S3://bucket"])
def test_store_that_looks_like_a_url(env, monkeypatch, capsys, spec):
    monkeypatch.setattr(sys, "argv", ["factory", "run", str(write_order(env)), "--store", spec])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    text = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2
    assert "s3://my-bucket" in text
    assert [p.name for p in env.iterdir()] == ["order.yaml"]


def test_out_is_a_directory(env, monkeypatch, capsys):
    (env / "deliveries").mkdir()
    text = refused(monkeypatch, capsys, env, write_order(env), "--out", "deliveries")
    assert "--out deliveries is a directory" in text


def test_out_below_a_file(env, monkeypatch, capsys):
    (env / "notes.txt").write_text("a file, not a folder")
    text = refused(monkeypatch, capsys, env, write_order(env), "--out", "notes.txt/x.mp4")
    assert "notes.txt is not a directory" in text


def test_out_where_nothing_can_be_written(env, monkeypatch, capsys):
    text = refused(monkeypatch, capsys, env, write_order(env), "--out", "/proc/factory/x.mp4")
    assert "--out /proc/factory/x.mp4 cannot be written" in text
