"""The factory's C2PA signing identity: a self-signed root (the trust anchor) and a leaf.

c2pa-rs bundles no trust list, so the root made here is the only anchor verifiers
use; without a timestamp authority a manifest is judged by its leaf's validity at
read time, so the leaf is long-lived.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# ES256 over Ed25519: both cost about 1 ms a signature, but ES256 is the most widely
# supported C2PA algorithm (Ed25519 is missing from some validators and WebCrypto stacks).
ALG = "es256"
_CLAIM_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# A verifier whose clock runs behind the factory's must not see a fresh leaf as not yet valid.
_BACKDATE = timedelta(days=1)


@dataclass(frozen=True)
class CertificateChain:
    """A C2PA signing identity: a self-signed root (the trust anchor) and the leaf that signs.

    ``leaf_cert_pem`` is the chain the signer sends: the leaf, then intermediates (none here).
    The root is not in it; verifiers must hold it already, as their trust anchor.
    """

    root_cert_pem: bytes
    leaf_cert_pem: bytes
    leaf_key_pem: bytes
    alg: str

    def __repr__(self) -> str:
        # Never the key: a repr reaches logs and tracebacks.
        leaf = x509.load_pem_x509_certificate(self.leaf_cert_pem)
        return (
            f"CertificateChain(alg={self.alg!r}, leaf={leaf.subject.rfc4514_string()!r}, "
            f"not_after={leaf.not_valid_after_utc.date().isoformat()})"
        )


def make_certificate_chain(common_name: str, *, years: int = 30) -> CertificateChain:
    """A new root CA and a leaf it issued, both valid for ``years``, with fresh ES256 keys.

    Without a timestamp authority a manifest is judged by its leaf's validity at read time,
    so an offline factory needs a leaf that outlives everything it signs.
    """
    now = datetime.now(UTC)
    not_before, not_after = now - _BACKDATE, now + timedelta(days=365 * years + years // 4)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(common_name, f"{common_name} C2PA Root")
    root_key_id = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        _certificate(root_name, root_name, root_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(root_key_id, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_name = _name(common_name, f"{common_name} C2PA Signer")
    # c2pa-rs refuses a leaf that lacks any of these, saying only "the certificate is
    # invalid". The claim-signing EKU is C2PA's own, but c2pa-rs accepts it only when its
    # trust settings list it; emailProtection it accepts by default.
    leaf = (
        _certificate(leaf_name, root_name, leaf_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, _CLAIM_SIGNING_EKU]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_key_id),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return CertificateChain(
        root_cert_pem=root.public_bytes(serialization.Encoding.PEM),
        leaf_cert_pem=leaf.public_bytes(serialization.Encoding.PEM),
        leaf_key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        alg=ALG,
    )


def _name(organization: str, common_name: str) -> x509.Name:
    # C2PA tools show the issuer's O as who signed.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
