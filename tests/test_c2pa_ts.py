"""Every manifest the factory writes, read and validated by a second C2PA implementation.

TrustNXT's c2pa-ts (TypeScript, run with node; ``tests/c2pa_ts/``) shares no code with
c2pa-rs, which c2pa-python wraps. It checks the claim signature, the certificate profile,
every assertion's hashed URI, the BMFF hash and each ingredient's claim signature. It has
no trust anchors, so the test checks the signer chain it used against the factory's root.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from factory.orders import load_order
from flows.produce import produce
from media.certificates import make_certificate_chain
from media.credential_reports import IngredientReport, read_credentials
from media.credentials import (
    PROVENANCE_LABEL,
    QUALITY_VERDICT_LABEL,
    TRAINED_ALGORITHMIC_MEDIA,
    CredentialSigner,
    Ingredient,
)
from storage import keys
from storage.local import LocalStore
from tests.test_content_credentials import PROVENANCE, h264

EXAMPLES = Path(__file__).parent.parent / "examples"
PROJECT = Path(__file__).parent / "c2pa_ts"
# The codes c2pa-ts reports as failures for a manifest embedded as an ingredient, when it is
# validated against the file that embeds it: its hard binding is to its own asset.
FOREIGN_BINDING = {"assertion.bmffHash.mismatch"}


@pytest.fixture(scope="session")
def c2pa_ts(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """verify.mjs beside an install of the locked packages, made once per lockfile.

    Not ``npm ci``: it calls the lockfile out of sync when the registry lacks cbor-extract's
    optional native builds (as the mirror here does); ``npm install --no-save`` with the
    lockfile installs the same versions and leaves the lockfile alone.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run c2pa-ts (Node.js 20 or newer)")
    manifests = [PROJECT / "package.json", PROJECT / "package-lock.json"]
    version = hashlib.sha256(b"".join(path.read_bytes() for path in manifests)).hexdigest()
    cache = pytestconfig.cache
    base = cache.mkdir("c2pa-ts") if cache is not None else tmp_path_factory.mktemp("c2pa-ts")
    installed = base / version[:16]
    if not (installed / "node_modules").is_dir():
        # Installed beside, then renamed: an interrupted install is never taken as done.
        partial = base / f"{version[:16]}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for path in manifests:
            shutil.copy(path, partial / path.name)
        done = subprocess.run(
            ["npm", "install", "--no-save", "--ignore-scripts", "--prefer-offline",
             "--no-audit", "--no-fund"],
            cwd=partial, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"npm install of c2pa-ts failed:\n{done.stderr[-3000:]}"
        shutil.rmtree(installed, ignore_errors=True)
        partial.rename(installed)
    shutil.copy(PROJECT / "verify.mjs", installed / "verify.mjs")
    return installed


def c2pa_ts_reports(project: Path, files: list[Path]) -> list[dict[str, Any]]:
    """What c2pa-ts makes of each file, with the factory's assertions decoded."""
    done = subprocess.run(
        ["node", str(project / "verify.mjs"), *map(str, files),
         "--label", PROVENANCE_LABEL, "--label", QUALITY_VERDICT_LABEL],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def failures(statuses: list[dict[str, Any]]) -> list[str]:
    return [f"{status['code']} {status['url']}" for status in statuses if not status["success"]]


def codes(statuses: list[dict[str, Any]]) -> set[str]:
    return {status["code"] for status in statuses}


@pytest.fixture(scope="module")
def produced(
    prefect_server: None, factory_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStore, dict[str, str], dict[str, Path]]]:
    """The tiny order produced once: its store, each MP4's stage by digest, and its path."""
    root = tmp_path_factory.mktemp("c2pa-ts") / "store"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACTORY_HOME", str(factory_home))
        delivery = produce(load_order(EXAMPLES / "tiny.yaml"), str(root), floor=False)
    stages = {run.output_digest: run.stage for run in delivery.runs}
    paths = {digest: root / "assets" / "sha256" / digest[:2] / digest for digest in stages}
    assert all(path.is_file() for path in paths.values())
    yield LocalStore(root), stages, paths


@pytest.fixture(scope="module")
def reports(c2pa_ts: Path, produced) -> dict[str, dict[str, Any]]:
    _, _, paths = produced
    digests = sorted(paths)
    return dict(zip(digests, c2pa_ts_reports(c2pa_ts, [paths[d] for d in digests]), strict=True))


def test_every_manifest_the_factory_writes_validates_in_c2pa_ts(produced, reports) -> None:
    _, stages, _ = produced
    assert (
        sorted(stages.values())
        == ["assemble"] + ["composite"] * 2 + ["encode"] * 2 + ["render"] * 2
    )
    for digest, report in reports.items():
        where = f"{stages[digest]} {digest[:12]}"
        assert "error" not in report, f"{where}: {report.get('error')}"
        assert failures(report["validation"]) == [], where
        found = codes(report["validation"])
        assert {
            "claimSignature.validated",
            "signingCredential.trusted",
            "assertion.bmffHash.match",
        } <= found, where
        # Every manifest in the store, embedded ones too: their own signature and
        # assertions hold; only their hard binding is to another file.
        for manifest in report["manifests"]:
            allowed = set() if manifest["active"] else FOREIGN_BINDING
            unexplained = [
                failure
                for failure in failures(manifest["validation"])
                if failure.split()[0] not in allowed
            ]
            assert unexplained == [], f"{where}: manifest {manifest['title']}"
            assert "assertion.hashedURI.match" in codes(manifest["validation"])
            assert PROVENANCE_LABEL in manifest["assertions"]
            for ingredient in manifest["ingredients"]:
                assert failures(ingredient["validation"]) == [], where
                # Only the composite's logo, a plain PNG, has no manifest to link to.
                holds = None if ingredient["title"] == "logo" else True
                assert ingredient["manifest_hash_holds"] is holds, where
                assert ingredient["claim_signature_hash_holds"] is holds, where
        [active] = [manifest for manifest in report["manifests"] if manifest["active"]]
        expected = {
            "render": [],
            "composite": [("parentOf", True), ("componentOf", False)],
            "encode": [("parentOf", True)],
            "assemble": [("componentOf", True)] * 2,
        }[stages[digest]]
        assert [
            (i["relationship"], i["active_manifest"] is not None) for i in active["ingredients"]
        ] == expected, where


def test_c2pa_ts_finds_a_tampered_embedded_manifest(produced, c2pa_ts, tmp_path) -> None:
    _, stages, paths = produced
    [digest] = [d for d, stage in stages.items() if stage == "assemble"]
    data = bytearray(paths[digest].read_bytes())
    # The first provenance key "models" (CBOR: a text string of 6) is a render's, embedded
    # twice removed in the deliverable.
    data[data.index(b"\x66models") + 3] ^= 0x01
    (tmp_path / "tampered.mp4").write_bytes(bytes(data))
    [report] = c2pa_ts_reports(c2pa_ts, [tmp_path / "tampered.mp4"])
    assert failures(report["validation"]) == []  # c2pa-ts checks the active manifest only
    broken = [
        m for m in report["manifests"] if "assertion.hashedURI.mismatch" in codes(m["validation"])
    ]
    assert [m["title"] for m in broken] == ["tiny segment 0 render"]
    links = [
        (m["title"], i["manifest_hash_holds"])
        for m in report["manifests"]
        for i in m["ingredients"]
        if i["active_manifest"] == f"self#jumbf=/c2pa/{broken[0]['label']}"
    ]
    assert links == [("tiny segment 0 composite", False)]


def test_deliverable_store_holds_every_ancestor_manifest(produced, reports) -> None:
    _, stages, _ = produced
    [deliverable] = [reports[d] for d, stage in stages.items() if stage == "assemble"]
    titles = sorted((m["title"], m["active"]) for m in deliverable["manifests"])
    # tiny: 2 segments, each encoded from a composite of a render; the deliverable itself.
    segments = [
        (f"tiny segment {i}{stage}", False)
        for i in (0, 1)
        for stage in ("", " composite", " render")
    ]
    assert titles == [("tiny deliverable", True), *segments]


def test_c2pa_ts_decodes_our_cbor_assertions_as_c2pa_python_reads_them(produced, reports) -> None:
    store, stages, paths = produced
    roots = keys.load_c2pa_roots(store)
    for digest, report in reports.items():
        where = f"{stages[digest]} {digest[:12]}"
        python = read_credentials(paths[digest].read_bytes(), roots)
        assert python.state == "Trusted", where
        [active] = [manifest for manifest in report["manifests"] if manifest["active"]]
        decoded = active["data"][PROVENANCE_LABEL]
        assert decoded["kind"] == "Cbor", where
        assert decoded["data"] == python.assertion, where
        assert decoded["data"]["stage"] == stages[digest]
        # Every embedded manifest's assertion too, as c2pa-python finds it walking ingredients.
        embedded = [m["data"][PROVENANCE_LABEL] for m in report["manifests"] if not m["active"]]
        assert all(e["kind"] == "Cbor" for e in embedded), where
        walked = _walk(python.ingredients)
        for found in embedded:
            # Compared as JSON values (1 == 1.0: JavaScript has one number type).
            walked.remove(found["data"])
        assert walked == [], where


def test_c2pa_ts_validated_with_the_factory_chain(produced, reports) -> None:
    """c2pa-ts has no trust anchors; the leaf it checked signatures with is our root's."""
    store, _, _ = produced
    [root] = [x509.load_pem_x509_certificate(pem) for pem in keys.load_c2pa_roots(store)]
    for report in reports.values():
        for manifest in report["manifests"]:
            leaf, *intermediates = (
                x509.load_der_x509_certificate(base64.b64decode(der))
                for der in manifest["signer_chain"]
            )
            assert intermediates == []
            leaf.verify_directly_issued_by(root)


def test_a_json_assertion_fails_in_c2pa_ts_where_cbor_holds(c2pa_ts: Path, tmp_path: Path) -> None:
    """Why the factory writes CBOR: c2pa-rs hashes the JSON it wrote, c2pa-ts the JSON it
    writes again, and the two differ for an integral float (``1.0``) or an integer past 2**53."""
    signer = CredentialSigner(make_certificate_chain("Interop Test"))
    data = {**PROVENANCE, "share": 1.0, "wide": 2**53 + 1}
    for kind in ("Json", "Cbor"):
        assertion = {"label": PROVENANCE_LABEL, "data": data}
        if kind == "Json":
            assertion["kind"] = "Json"
        signed = signer.sign_mp4(
            h264(0), title=kind, digital_source_type=TRAINED_ALGORITHMIC_MEDIA,
            assertions=[assertion],
        )  # fmt: skip
        (tmp_path / f"{kind}.mp4").write_bytes(signed)
    json_kind, cbor_kind = c2pa_ts_reports(c2pa_ts, [tmp_path / "Json.mp4", tmp_path / "Cbor.mp4"])
    uri = f"self#jumbf=c2pa.assertions/{PROVENANCE_LABEL}"
    assert failures(json_kind["validation"]) == [f"assertion.hashedURI.mismatch {uri}"]
    assert json_kind["manifests"][0]["data"][PROVENANCE_LABEL]["data"]["wide"] != data["wide"]
    assert failures(cbor_kind["validation"]) == []
    assert cbor_kind["manifests"][0]["data"][PROVENANCE_LABEL] == {"kind": "Cbor", "data": data}
    # c2pa-rs validates both: the JSON trap shows only in an independent reader.
    for name in ("Json.mp4", "Cbor.mp4"):
        report = read_credentials((tmp_path / name).read_bytes(), [])
        assert (report.state, report.assertion) == ("Valid", data)


def test_fragmented_mp4_validates_in_c2pa_ts(c2pa_ts: Path, tmp_path: Path) -> None:
    """Orders may ask for fragmented MP4 (brands iso5, iso6, mp41 rather than isom)."""
    signer = CredentialSigner(make_certificate_chain("Fragmented Test"))
    media = h264(0, fragmented=True)
    render = signer.sign(media, action="created", title="render", provenance=PROVENANCE)
    encoded = signer.sign(
        media,
        action="transcoded",
        title="encode",
        parent=Ingredient(render, "render", "render"),
        provenance={"stage": "encode"},
    )
    (tmp_path / "fragmented.mp4").write_bytes(encoded)
    [report] = c2pa_ts_reports(c2pa_ts, [tmp_path / "fragmented.mp4"])
    assert failures(report["validation"]) == []
    assert "assertion.bmffHash.match" in codes(report["validation"])
    [embedded] = [m for m in report["manifests"] if not m["active"]]
    assert embedded["data"][PROVENANCE_LABEL] == {"kind": "Cbor", "data": PROVENANCE}


def _walk(ingredients: list[IngredientReport]) -> list[dict[str, Any]]:
    found = []
    for ingredient in ingredients:
        if ingredient.assertion is not None:
            found.append(ingredient.assertion)
        found.extend(_walk(ingredient.ingredients))
    return found
