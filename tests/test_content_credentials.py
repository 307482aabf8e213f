import io
import multiprocessing
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from factory.errors import BadInput
from factory.verdicts import ExpectationFailure, Verdict
from media.certificates import ALG, CertificateChain, make_certificate_chain
from media.credential_reports import read_credentials, verify_credentials
from media.credentials import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    PROVENANCE_LABEL,
    QUALITY_VERDICT_LABEL,
    TRAINED_ALGORITHMIC_MEDIA,
    CredentialSigner,
    Ingredient,
    factory_assertion,
)
from media.video import concat_mp4, decode_frames, encode_h264, probe

FPS = 12
CLAIM_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# The key "model" of PROVENANCE as CBOR writes it: a text string of length 5.
CBOR_MODEL = b"\x65model"
# Lists of small integers, nested and empty containers, the widest integers, an integral
# float and non-ASCII text: each of these once came back changed from some path through c2pa.
PROVENANCE = {
    "model": "tiny-wan",
    "training": {"datasets": ["synthetic-v1"], "licensed": True, "opt_out_honoured": None},
    "royalty_routing": [{"party": "studio", "basis_points": 7000}, {"party": "é", "bp": 3000}],
    "shares": [1, 2, 255, 300, -1],
    "empty": {"list": [], "dict": {}},
    "widest": 2**63 - 1,
    "lowest": -(2**63),
    "one": 1.0,
    "ratio": 0.1,
    "record_digests": ["0" * 64],
}


def frames(seed: int, count: int = 12, size: int = 64) -> np.ndarray:
    """A smooth texture panning sideways, so x264 codes P- and B-frames as on real video."""
    tiles = np.random.default_rng(seed).integers(0, 256, (size // 8 + 1, size // 8 + count, 3))
    texture = np.repeat(np.repeat(tiles, 8, axis=0), 8, axis=1).astype(np.uint8)
    return np.stack([texture[:size, 2 * t : 2 * t + size] for t in range(count)])


def h264(seed: int, fragmented: bool = False) -> bytes:
    return encode_h264(frames(seed), FPS, crf=23, preset="veryfast", fragmented=fragmented)


def top_level_box(data: bytes, kind: bytes) -> tuple[int, int]:
    """(offset, size) of the first top-level box of that kind."""
    offset = 0
    while offset + 8 <= len(data):
        size, found = struct.unpack(">I4s", data[offset : offset + 8])
        if found == kind:
            return offset, size
        offset += size
    raise AssertionError(f"no {kind!r} box")


def flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


def codes(failures: list[str]) -> list[str]:
    return [failure.split(":")[0] for failure in failures]


@pytest.fixture(scope="module")
def chain() -> CertificateChain:
    return make_certificate_chain("Test Factory")


@pytest.fixture(scope="module")
def anchors(chain: CertificateChain) -> list[bytes]:
    return [chain.root_cert_pem]


@pytest.fixture(scope="module")
def signer(chain: CertificateChain) -> CredentialSigner:
    return CredentialSigner(chain)


@pytest.fixture(scope="module")
def unsigned() -> bytes:
    return h264(0)


@pytest.fixture(scope="module")
def rendered(signer: CredentialSigner, unsigned: bytes) -> bytes:
    return signer.sign(unsigned, action="created", title="render-0", provenance=PROVENANCE)


@pytest.fixture(scope="module")
def logo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (16, 8), (255, 0, 0, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def segment(signer: CredentialSigner, logo: bytes, index: int, fragmented: bool) -> bytes:
    """A segment as the flow makes it: render, composite with a logo, delivery encode."""
    media = h264(index, fragmented)
    render = signer.sign(media, action="created", title=f"render-{index}", provenance=PROVENANCE)
    composite = signer.sign(
        media,
        action="composited",
        title=f"composite-{index}",
        parent=Ingredient(render, f"render-{index}", "render"),
        components=[Ingredient(logo, "logo", "logo", format="image/png")],
        provenance={"stage": "composite"},
    )
    return signer.sign(
        media,
        action="transcoded",
        title=f"segment-{index}",
        parent=Ingredient(composite, f"composite-{index}", "composite"),
        provenance={"stage": "encode"},
    )


def test_certificate_chain_has_the_profile_c2pa_requires(chain: CertificateChain) -> None:
    root = x509.load_pem_x509_certificate(chain.root_cert_pem)
    leaves = x509.load_pem_x509_certificates(chain.leaf_cert_pem)
    assert len(leaves) == 1, "the signer's chain holds the leaf only, never the root"
    leaf = leaves[0]
    assert chain.alg == ALG == "es256"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    usages = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.EMAIL_PROTECTION, CLAIM_SIGNING_EKU}
    authority = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject.digest
    assert leaf.issuer == root.subject
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days > 29 * 365


def test_reprs_never_show_the_key(chain: CertificateChain, signer: CredentialSigner) -> None:
    body = b"".join(chain.leaf_key_pem.splitlines()[1:-1]).decode()
    for text in (repr(chain), str(chain), repr(signer)):
        assert "PRIVATE" not in text and body[:16] not in text
        assert "Test Factory C2PA Signer" in text


def test_signed_render_is_trusted_and_reads_back(rendered: bytes, anchors: list[bytes]) -> None:
    report = read_credentials(rendered, anchors)
    assert report.state == "Trusted"
    assert report.failures == []
    assert report.title == "render-0"
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert report.assertion == PROVENANCE
    assert report.ingredients == []
    assert verify_credentials(rendered, anchors) == []


def test_factory_assertions_are_cbor_and_read_back_at_any_depth(
    signer: CredentialSigner, unsigned: bytes, anchors: list[bytes]
) -> None:
    judged = Verdict(
        suite="segment",
        suite_version="1",
        passed=False,
        failures=(
            ExpectationFailure(
                expectation="expect_column_max_to_be_between",
                metric="frozen_run",
                observed=[0, 3, 255],
                expected={"min_value": 0, "max_value": 2.0},
            ),
        ),
        metrics={"black_share": 0.0, "frames": 8},
        attempt=2,
    )
    verdict = judged.model_dump(mode="json")
    render = signer.sign(
        unsigned,
        action="created",
        title="render",
        provenance=PROVENANCE,
        extra_assertions={QUALITY_VERDICT_LABEL: verdict},
    )
    offset, size = top_level_box(render, b"uuid")
    manifest = render[offset : offset + size]
    # CBOR writes the key as a text string with its length; a JSON assertion, as '"model"'.
    assert CBOR_MODEL in manifest and b'"model"' not in manifest
    ours = {PROVENANCE_LABEL: PROVENANCE, QUALITY_VERDICT_LABEL: verdict}
    report = read_credentials(render, anchors)
    assert (report.state, report.assertion, report.factory_assertions) == (
        "Trusted",
        PROVENANCE,
        ours,
    )
    assert Verdict.model_validate(report.factory_assertions[QUALITY_VERDICT_LABEL]) == judged
    assert read_credentials(render, anchors, with_assertion=False).factory_assertions == {}
    encoded = signer.sign(
        unsigned,
        action="transcoded",
        title="encode",
        parent=Ingredient(render, "render", "render"),
        provenance={"stage": "encode"},
    )
    report = read_credentials(encoded, anchors)
    assert report.factory_assertions == {PROVENANCE_LABEL: {"stage": "encode"}}
    assert [i.factory_assertions for i in report.ingredients] == [ours]


def test_factory_assertion_labels_are_checked(signer: CredentialSigner, unsigned: bytes) -> None:
    assert factory_assertion(QUALITY_VERDICT_LABEL, {"a": [1]}) == {
        "label": "dev.asset-factory.quality-verdict",
        "data": {"a": [1]},
    }
    for label in ("c2pa.actions", "dev.asset-factory.", "dev.asset-factory.Verdict", "x.verdict"):
        with pytest.raises(BadInput, match=r"must be 'dev\.asset-factory\.' followed by"):
            factory_assertion(label, {})
    with pytest.raises(BadInput, match="is the provenance argument"):
        signer.sign(
            unsigned,
            action="created",
            title="x",
            provenance={},
            extra_assertions={PROVENANCE_LABEL: {}},
        )
    with pytest.raises(BadInput, match="quality-verdict must be plain JSON"):
        signer.sign(
            unsigned,
            action="created",
            title="x",
            provenance={},
            extra_assertions={QUALITY_VERDICT_LABEL: {"attempt": 2**63}},
        )


def test_unknown_root_leaves_the_signer_untrusted(rendered: bytes) -> None:
    for anchors in ([], [make_certificate_chain("Someone Else").root_cert_pem]):
        report = read_credentials(rendered, anchors)
        assert report.state == "Valid"
        assert codes(report.failures) == ["signingCredential.untrusted"]
        assert codes(verify_credentials(rendered, anchors)) == ["signingCredential.untrusted"]


def test_signing_keeps_frames_and_adds_no_thumbnail(rendered: bytes, unsigned: bytes) -> None:
    assert np.array_equal(decode_frames(rendered), decode_frames(unsigned))
    assert probe(rendered) == probe(unsigned)
    # A thumbnail would add tens to hundreds of KB; the manifest alone is about 3 KB.
    assert len(rendered) - len(unsigned) < 30_000


def test_flipped_media_byte_breaks_the_bmff_hash(rendered: bytes, anchors: list[bytes]) -> None:
    offset, size = top_level_box(rendered, b"mdat")
    tampered = flipped(rendered, offset + size // 2)
    report = read_credentials(tampered, anchors)
    assert report.state == "Invalid"
    assert codes(report.failures) == ["assertion.bmffHash.mismatch"]
    assert codes(verify_credentials(tampered, anchors)) == ["assertion.bmffHash.mismatch"]


def test_flipped_manifest_bytes_are_caught(rendered: bytes, anchors: list[bytes]) -> None:
    offset, size = top_level_box(rendered, b"uuid")
    # The COSE signature's own bytes end the manifest box.
    signature = read_credentials(flipped(rendered, offset + size - 1), anchors)
    assert signature.state == "Invalid"
    assert codes(signature.failures) == ["claimSignature.mismatch"]
    assertion = flipped(rendered, rendered.index(CBOR_MODEL, offset) + 3)
    report = read_credentials(assertion, anchors)
    assert report.state == "Invalid"
    assert codes(report.failures) == ["assertion.hashedURI.mismatch"]
    assert "dev.asset-factory.provenance" in report.failures[0]


def test_stripped_manifest_reads_missing(
    rendered: bytes, unsigned: bytes, anchors: list[bytes]
) -> None:
    # A stream-copy remux through PyAV drops the manifest's uuid box.
    for data in (unsigned, concat_mp4([rendered], fragmented=False)):
        report = read_credentials(data, anchors)
        assert report.state == "Missing"
        assert verify_credentials(data, anchors) == ["manifest missing"]


@pytest.mark.parametrize("fragmented", [False, True], ids=["flat", "fragmented"])
def test_signed_segments_join_and_the_deliverable_carries_their_history(
    signer: CredentialSigner, logo: bytes, anchors: list[bytes], fragmented: bool
) -> None:
    segments = [segment(signer, logo, index, fragmented) for index in range(2)]
    joined = concat_mp4(segments, fragmented=fragmented)
    expected = np.concatenate([decode_frames(h264(index, fragmented)) for index in range(2)])
    assert np.array_equal(decode_frames(joined), expected)
    assert read_credentials(joined, anchors).state == "Missing"

    deliverable = signer.sign(
        joined,
        action="assembled",
        title="deliverable",
        components=[
            Ingredient(data, f"segment-{i}", f"segment-{i}") for i, data in enumerate(segments)
        ],
        provenance={"order": "demo"},
    )
    assert np.array_equal(decode_frames(deliverable), expected)
    assert verify_credentials(deliverable, anchors) == []
    report = read_credentials(deliverable, anchors)
    assert report.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert report.assertion == {"order": "demo"}

    def tree(ingredients: list) -> list:
        return [(i.title, i.relationship, i.has_manifest, tree(i.ingredients)) for i in ingredients]

    assert tree(report.ingredients) == [
        (
            f"segment-{index}",
            "componentOf",
            True,
            [
                (
                    f"composite-{index}",
                    "parentOf",
                    True,
                    [(f"render-{index}", "parentOf", True, []), ("logo", "componentOf", False, [])],
                )
            ],
        )
        for index in range(2)
    ]
    composite = read_credentials(
        signer.sign(
            h264(0),
            action="composited",
            title="composite",
            parent=Ingredient(
                signer.sign(h264(0), action="created", title="r", provenance={}), "r", "r"
            ),
            components=[],
            provenance={},
        ),
        anchors,
    )
    assert composite.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA


def test_tampered_ingredient_fails_verification_though_the_child_is_trusted(
    signer: CredentialSigner, logo: bytes, anchors: list[bytes]
) -> None:
    good, bad = (segment(signer, logo, index, False) for index in range(2))
    offset, size = top_level_box(bad, b"mdat")
    bad = flipped(bad, offset + size // 2)
    child = signer.sign(
        concat_mp4([good, h264(1)], fragmented=False),
        action="assembled",
        title="deliverable",
        components=[Ingredient(good, "segment-0", "s0"), Ingredient(bad, "segment-3", "s3")],
        provenance={},
    )
    report = read_credentials(child, anchors)
    assert (report.state, report.failures) == ("Trusted", [])
    reasons = verify_credentials(child, anchors)
    assert len(reasons) == 1
    assert reasons[0].startswith("ingredient 'segment-3': assertion.bmffHash.mismatch")


def test_tampered_embedded_ingredient_manifest_is_found_at_its_depth(
    signer: CredentialSigner, logo: bytes, anchors: list[bytes]
) -> None:
    media = h264(0)
    seg = segment(signer, logo, 0, False)
    child = signer.sign(
        media,
        action="assembled",
        title="deliverable",
        components=[Ingredient(seg, "segment-0", "s0")],
        provenance={},
    )
    # The render's manifest is embedded twice removed; its provenance is the first one.
    tampered = flipped(child, child.index(CBOR_MODEL) + 3)
    reasons = verify_credentials(tampered, anchors)
    path = "ingredient 'segment-0' > 'composite-0' > 'render-0'"
    assert [reason.split(": ")[:2] for reason in reasons] == [
        [path, "ingredient.manifest.mismatch"],
        [path, "assertion.hashedURI.mismatch"],
    ]
    assert read_credentials(tampered, anchors).state == "Invalid"


def test_one_signer_serves_four_threads(
    signer: CredentialSigner, unsigned: bytes, anchors: list[bytes]
) -> None:
    def sign(index: int) -> bytes:
        parent = signer.sign(unsigned, action="created", title=f"r{index}", provenance={"i": index})
        return signer.sign(
            unsigned,
            action="transcoded",
            title=f"e{index}",
            parent=Ingredient(parent, "r", "r"),
            provenance={},
        )

    with ThreadPoolExecutor(4) as pool:
        signed = list(pool.map(sign, range(16)))
    for index, data in enumerate(signed):
        assert verify_credentials(data, anchors) == []
        assert read_credentials(data, anchors).title == f"e{index}"


def _sign_in_child(
    signer: CredentialSigner, data: bytes, anchors: list[bytes], results: multiprocessing.Queue
) -> None:
    signed = signer.sign(data, action="created", title="child", provenance={})
    results.put(verify_credentials(signed, anchors))


def test_signer_made_before_fork_works_in_the_child(
    signer: CredentialSigner, unsigned: bytes, anchors: list[bytes]
) -> None:
    signer.sign(unsigned, action="created", title="parent", provenance={})
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    # A forked Process takes its arguments as they are: the signer is not picklable.
    child = fork.Process(target=_sign_in_child, args=(signer, unsigned, anchors, results))
    child.start()
    try:
        assert results.get(timeout=30) == []
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0


def test_bad_requests_are_refused(signer: CredentialSigner, unsigned: bytes) -> None:
    with pytest.raises(BadInput, match="exactly one"):
        signer.sign_mp4(unsigned, title="x", digital_source_type=None)
    for provenance in ({"t": (1, 2)}, {1: "x"}, {"x": 2**63}, {"x": float("nan")}, {"x": b""}):
        with pytest.raises(BadInput, match="provenance"):
            signer.sign(unsigned, action="created", title="x", provenance=provenance)
    twice = [Ingredient(unsigned, "a", "same"), Ingredient(unsigned, "b", "same")]
    with pytest.raises(BadInput, match="unique"):
        signer.sign(unsigned, action="assembled", title="x", components=twice, provenance={})
    parents = [Ingredient(unsigned, title, title, relationship="parentOf") for title in ("a", "b")]
    with pytest.raises(BadInput, match="at most one parentOf"):
        signer.sign_mp4(
            unsigned,
            title="x",
            actions=[{"action": "c2pa.opened", "parameters": {"ingredientIds": ["a", "b"]}}],
            ingredients=parents,
        )
    with pytest.raises(BadInput, match="must be created or opened"):
        signer.sign_mp4(unsigned, title="x", actions=[{"action": "c2pa.edited"}])
