"""Verify a factory deliverable without the factory's code, given only its root fingerprint.

Uses nothing from the asset factory: securesystemslib checks the DSSE signatures,
cryptography loads keys, and c2pa-python (the C2PA reference SDK) reads the manifest.
The store is a local directory (copy an S3 store's ``keys/``, ``lineage/`` and ``assets/``
prefixes down first, e.g. with ``aws s3 sync``).

    python examples/verify_independently.py DELIVERABLE.mp4 --store STORE_DIR \\
        --root sha256:<fingerprint from `factory keys trust`>

Exit 0 and VERIFIED only if: the store's copy of the root matches the fingerprint; every
lineage record of the deliverable and its ancestors is signed by a key the root
certified; every parent link matches the SHA-256 of the parent's record; every stored
ancestor hashes to its name; the C2PA manifest is Trusted against the C2PA root the root
certified; and the manifest's parent record digests equal the records found.
"""

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import c2pa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

STATEMENT_TYPE = "application/vnd.asset-factory.key-statement+json"
RECORD_TYPE = "application/vnd.in-toto+json"
ASSERTION = "dev.asset-factory.provenance"


def raw_fingerprint(key) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def verified_payload(data: bytes, payload_type: str, keys: dict) -> tuple[dict, str]:
    """The JSON payload of a DSSE envelope signed by one of ``keys`` (key id -> SSlibKey)."""
    envelope = Envelope.from_dict(json.loads(data))
    if envelope.payload_type != payload_type:
        raise ValueError(f"payloadType {envelope.payload_type}")
    known = [keys[key_id] for key_id in envelope.signatures if key_id in keys]
    if not known:
        raise ValueError(f"signed by uncertified key(s) {', '.join(envelope.signatures)}")
    signer = next(iter(envelope.verify(known, 1)))
    return json.loads(envelope.payload), signer


def certified_keys(store: Path, root_id: str) -> tuple[dict, list[bytes]]:
    """Lineage keys and C2PA roots the root certified, from its statements in the store."""
    root = load_pem_public_key((store / "keys" / "root" / f"{root_id}.pem").read_bytes())
    if raw_fingerprint(root) != root_id:
        raise SystemExit(f"NOT VERIFIED: the store's root is not {root_id}")
    trusted_root = {root_id: SSlibKey.from_crypto(root, root_id, "ed25519")}
    lineage, c2pa_roots = {}, []
    for path in sorted((store / "keys" / "statements" / root_id).glob("*.dsse.json")):
        statement, _ = verified_payload(path.read_bytes(), STATEMENT_TYPE, trusted_root)
        if statement["statement"] != "certify":
            continue  # a retired key still verifies what it signed
        pem = statement["public_key"].encode()
        if statement["kind"] == "lineage":
            key = load_pem_public_key(pem)
            assert raw_fingerprint(key) == statement["key_id"], path
            lineage[statement["key_id"]] = SSlibKey.from_crypto(key, statement["key_id"], "ed25519")
        else:
            assert hashlib.sha256(pem).hexdigest() == statement["key_id"], path
            c2pa_roots.append(pem)
    return lineage, c2pa_roots


def walk(store: Path, digest: str, lineage: dict, problems: list[str]) -> dict | None:
    """Check the record of ``digest`` and, recursively, of its parents; the record."""
    path = store / "lineage" / "records" / digest[:2] / f"{digest}.dsse.json"
    if not path.exists():
        problems.append(f"{digest[:12]}: no lineage record")
        return None
    try:
        statement, _ = verified_payload(path.read_bytes(), RECORD_TYPE, lineage)
    except ValueError as error:
        problems.append(f"{digest[:12]}: {error}")
        return None
    record = statement["predicate"]
    subject = statement["subject"][0]["digest"]["sha256"]
    if subject != digest or record["asset"]["digest"] != digest:
        problems.append(f"{digest[:12]}: the record describes another asset")
    for parent in record["parents"]:
        parent_path = store / "lineage" / "records" / parent["digest"][:2]
        envelope = parent_path / f"{parent['digest']}.dsse.json"
        if (
            envelope.exists()
            and hashlib.sha256(envelope.read_bytes()).hexdigest() != parent["record_digest"]
        ):
            problems.append(f"{parent['digest'][:12]}: record differs from its child's link")
        asset = store / "assets" / "sha256" / parent["digest"][:2] / parent["digest"]
        if asset.exists() and hashlib.sha256(asset.read_bytes()).hexdigest() != parent["digest"]:
            problems.append(f"{parent['digest'][:12]}: stored bytes altered")
        walk(store, parent["digest"], lineage, problems)
    return record


def check_manifest(data: bytes, c2pa_roots: list[bytes], record: dict) -> list[str]:
    settings = {
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "trust": {"user_anchors": b"".join(c2pa_roots).decode()},
    }
    reader = c2pa.Reader.try_create(
        "video/mp4", io.BytesIO(data), None, c2pa.Context.from_dict(settings)
    )
    if reader is None:
        return ["no C2PA manifest"]
    with reader:
        store = json.loads(reader.json())
        exact = json.loads(reader.crjson())
    problems = []
    if store.get("validation_state") != "Trusted":
        problems.append(f"C2PA manifest is {store.get('validation_state')}, not Trusted")
    active = next(m for m in exact["manifests"] if m["label"] == store["active_manifest"])
    claimed = active["assertions"].get(ASSERTION, {}).get("parent_records", [])
    found = [
        {"digest": p["digest"], "record_digest": p["record_digest"]} for p in record["parents"]
    ]
    if sorted(map(str, claimed)) != sorted(map(str, found)):
        problems.append("C2PA manifest names other parent records than the lineage")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--root", required=True, help="sha256:<root fingerprint>")
    args = parser.parse_args()
    lineage, c2pa_roots = certified_keys(args.store, args.root.removeprefix("sha256:"))
    data = args.file.read_bytes()
    problems: list[str] = []
    record = walk(args.store, hashlib.sha256(data).hexdigest(), lineage, problems)
    problems += check_manifest(data, c2pa_roots, record) if record else []
    for problem in problems:
        print(f"  problem: {problem}")
    print("NOT VERIFIED" if problems else "VERIFIED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
