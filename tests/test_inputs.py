"""Input images by reference: a local path, a store digest, an s3:// or file:// URI.

Each kind is checked before any work, with the same image checks; `factory assets put`
uploads an input and prints the digest an order sent through the API names.
"""

import json
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

from factory.assets import sha256_hex
from factory.errors import BadInput
from factory.orders import load_order, parse_order
from factory.registry import load_registry
from flows.produce import produce
from storage.inputs import InputSource
from storage.local import LocalStore
from storage.open import open_store
from tasks.prepare import check_order
from tests.test_cli import run_cli

EXAMPLES = Path(__file__).parent.parent / "examples"
LOGO = EXAMPLES / "logo.png"
LOGO_DIGEST = f"sha256:{sha256_hex(LOGO.read_bytes())}"


def _order(logo: str | None = None, **segment) -> dict:
    order = {"id": "o1", "segments": [{"prompt": "p", "duration_s": 1, **segment}]}
    if logo is not None:
        order["composite"] = {"logo": logo}
    return order


def _check(order: dict, home: Path, store=None) -> None:
    check_order(parse_order(order), load_registry(), home / "models", InputSource(store))


@pytest.fixture
def home(factory_home: Path) -> Path:
    return factory_home


def test_assets_put_stores_the_input_with_an_ingest_record(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    code, text = run_cli(
        monkeypatch, capsys, "assets", "put", str(LOGO), "--store", str(tmp_path / "s")
    )
    assert code in (0, None)
    assert text.strip() == LOGO_DIGEST
    store = LocalStore(tmp_path / "s")
    hexdigest = LOGO_DIGEST.removeprefix("sha256:")
    assert store.get(f"assets/sha256/{hexdigest[:2]}/{hexdigest}") == LOGO.read_bytes()
    assert store.head(f"lineage/records/{hexdigest[:2]}/{hexdigest}.dsse.json") is not None


def test_assets_put_refuses_what_an_order_would(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path / "home"))
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image")
    code, text = run_cli(
        monkeypatch, capsys, "assets", "put", str(fake), "--store", str(tmp_path / "s")
    )
    assert code == 2
    assert "is not a PNG or JPEG image" in text
    assert not (tmp_path / "s").exists()


def test_a_digest_is_read_from_the_store(home, tmp_path):
    store = LocalStore(tmp_path / "s")
    store.put(f"assets/sha256/{LOGO_DIGEST[7:9]}/{LOGO_DIGEST[7:]}", LOGO.read_bytes())
    _check(_order(LOGO_DIGEST), home, store)


def test_a_missing_digest_says_how_to_upload(home, tmp_path):
    with pytest.raises(BadInput, match=r"is not in .*factory assets put FILE"):
        _check(_order(LOGO_DIGEST), home, LocalStore(tmp_path / "s"))


def test_a_stored_input_that_is_not_an_image_is_refused(home, tmp_path):
    store = LocalStore(tmp_path / "s")
    data = b"plain text, not an image"
    digest = sha256_hex(data)
    store.put(f"assets/sha256/{digest[:2]}/{digest}", data)
    with pytest.raises(BadInput, match="is not a PNG or JPEG image"):
        _check(_order(f"sha256:{digest}"), home, store)


def test_a_file_uri_is_read_like_a_path(home):
    _check(_order(LOGO.resolve().as_uri()), home)
    with pytest.raises(BadInput, match="cannot be read"):
        _check(_order("file:///nowhere/logo.png"), home)


@pytest.mark.s3
def test_an_s3_uri_is_read_with_its_size_checked_first(home, s3_env):
    bucket = s3_env.make_bucket()
    store = open_store(f"s3://{bucket}")
    store.put("inputs/logo.png", LOGO.read_bytes())
    _check(_order(f"s3://{bucket}/inputs/logo.png"), home)
    store.put("inputs/huge.png", b"\0" * (21 * 2**20))
    with pytest.raises(BadInput, match=r"input images may be at most 20\.0 MiB"):
        _check(_order(f"s3://{bucket}/inputs/huge.png"), home)
    with pytest.raises(BadInput, match="is not in"):
        _check(_order(f"s3://{bucket}/inputs/absent.png"), home)


@pytest.mark.parametrize(
    ("logo", "fragment"),
    [
        ("logo.png", "is a relative path, which has no meaning to the process that runs"),
        ("sha256:abc", "is not a store digest"),
        ("https://example.com/logo.png", "is a URI the factory cannot read"),
    ],
)
def test_unusable_references_are_refused_by_the_order(logo, fragment):
    with pytest.raises(BadInput, match=fragment):
        parse_order(_order(logo))


def test_order_files_keep_digests_and_resolve_relative_paths(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(
        json.dumps(
            {
                **_order(LOGO_DIGEST),
                "composite": {"logo": LOGO_DIGEST, "background_image": "bg.png"},
            }
        )
    )
    order = load_order(path)
    assert order.composite.logo == LOGO_DIGEST
    assert order.composite.background_image == str(tmp_path / "bg.png")


def _schema_problems(parameters: dict) -> list[str]:
    schema = parameter_schema(produce).model_dump_for_openapi()
    return [error.message for error in validate(parameters, schema)]


def test_the_parameter_schema_refuses_what_the_order_would():
    # What Prefect checks when a flow run is created through the API.
    assert _schema_problems({"order": _order(LOGO_DIGEST)}) == []
    problems = _schema_problems({"order": _order("logo.png", width=641, height=97, fps=0)})
    assert any("not a multiple of 2" in problem for problem in problems)
    assert any("does not match" in problem for problem in problems)
    assert len(problems) == 4
