"""The cryptography of steps 3-9, as pure functions over bytes.

* ``report_data``: the 64 bytes a Keep's evidence must carry (step 4). Every
  input is fixed-length or length-prefixed, so no two distinct inputs share a
  preimage, and the backend id and HPKE suite are inside it so that evidence
  cannot be relabelled or its key reinterpreted under another suite.
* ``KeepKeys``: the Keep's fresh HPKE key pairs (step 3) and the opening of the
  sealed TLS key (step 7).
* ``seal_tls_key``: the client's side of step 6.
* ``make_tls_key``, ``self_signed_certificate``, ``spki``: the one-use TLS
  identity (steps 6, 7 and 9).

HPKE is RFC 9180 as implemented by ``cryptography``: base mode, HKDF-SHA256,
AES-128-GCM, with X25519 or the hybrid ML-KEM-768+X25519 KEM.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)
from cryptography.x509.oid import NameOID

from arx.errors import AttestationError, MessageError
from arx.protocol.messages import NONCE_LENGTH, HpkeSuiteName

REPORT_DATA_DOMAIN = b"arx keep v1"
KEY_PROOF_DOMAIN = b"arx workload proof v1"
# The workload channel's one route, and the header that proves the caller
# holds the provisioned TLS key (docs/protocol.md, "The workload channel").
WORKLOAD_PATH = "/v1/workload"
KEY_PROOF_HEADER = b"arx-key-proof"
PROVISION_INFO_DOMAIN = b"arx provision v1"

_SUITES: dict[str, Suite] = {
    "x25519": Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM),
    "mlkem768-x25519": Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM),
}
_X25519_LEN = 32
_MLKEM768_PUBLIC_LEN = 1184

# The one-use TLS certificate lives only as long as one deployment; a day
# covers any clock skew between client and Keep without mattering for trust,
# which rests on the pinned key, not on the certificate's dates.
TLS_CERT_LIFETIME = datetime.timedelta(days=1)


def _prefixed(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def report_data(
    *, backend: str, keep_id: str, nonce: bytes, suite: HpkeSuiteName, public_key: bytes
) -> bytes:
    """SHA-512("arx keep v1" || len||backend || len||keep id || nonce || len||suite || len||key).

    The Keep id is inside so that evidence from another Keep, however genuine,
    cannot stand in for the Keep the client created.
    """
    if len(nonce) != NONCE_LENGTH:
        raise MessageError(f"nonce must be {NONCE_LENGTH} bytes")
    preimage = b"".join(
        (
            REPORT_DATA_DOMAIN,
            _prefixed(backend.encode()),
            _prefixed(keep_id.encode()),
            nonce,
            _prefixed(suite.encode()),
            _prefixed(public_key),
        )
    )
    return hashlib.sha512(preimage).digest()


def provision_info(report_data_value: bytes) -> bytes:
    """HPKE ``info`` for the sealed key: ties the ciphertext to one attestation."""
    return PROVISION_INFO_DOMAIN + report_data_value


@dataclass(frozen=True, slots=True)
class KeepKeys:
    """A Keep's HPKE key pairs, one per suite, made fresh at start (step 3)."""

    x25519_key: x25519.X25519PrivateKey
    mlkem_key: mlkem.MLKEM768PrivateKey
    hybrid_x25519_key: x25519.X25519PrivateKey

    @classmethod
    def generate(cls) -> KeepKeys:
        return cls(
            x25519.X25519PrivateKey.generate(),
            mlkem.MLKEM768PrivateKey.generate(),
            x25519.X25519PrivateKey.generate(),
        )

    def public_key(self, suite: HpkeSuiteName) -> bytes:
        if suite == "x25519":
            return self.x25519_key.public_key().public_bytes_raw()
        # The hybrid public key is the ML-KEM-768 key followed by the X25519 key.
        return (
            self.mlkem_key.public_key().public_bytes_raw()
            + self.hybrid_x25519_key.public_key().public_bytes_raw()
        )

    def open(self, suite: HpkeSuiteName, sealed: bytes, info: bytes) -> bytes:
        private: x25519.X25519PrivateKey | MLKEM768X25519PrivateKey
        if suite == "x25519":
            private = self.x25519_key
        else:
            private = MLKEM768X25519PrivateKey(self.mlkem_key, self.hybrid_x25519_key)
        try:
            return _SUITES[suite].decrypt(sealed, private, info)
        except (InvalidTag, ValueError) as exc:
            raise AttestationError(
                "the sealed key does not open with this Keep's key "
                "(altered in transit, or sealed to another key)"
            ) from exc


def _public_key(
    suite: HpkeSuiteName, data: bytes
) -> x25519.X25519PublicKey | MLKEM768X25519PublicKey:
    try:
        if suite == "x25519":
            if len(data) != _X25519_LEN:
                raise ValueError("X25519 public key must be 32 bytes")
            return x25519.X25519PublicKey.from_public_bytes(data)
        if len(data) != _MLKEM768_PUBLIC_LEN + _X25519_LEN:
            raise ValueError("ML-KEM-768+X25519 public key must be 1216 bytes")
        return MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM768_PUBLIC_LEN:]),
        )
    except ValueError as exc:
        raise MessageError(f"invalid {suite} public key: {exc}") from exc


def seal(suite: HpkeSuiteName, public_key: bytes, plaintext: bytes, info: bytes) -> bytes:
    """HPKE base-mode single-shot encryption to the Keep's attested key."""
    return _SUITES[suite].encrypt(plaintext, _public_key(suite, public_key), info)


def make_tls_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A one-use P-256 key pair and its private key as PKCS#8 DER (what gets sealed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, der


def load_tls_key(der: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as exc:
        raise MessageError("the provisioned TLS key is not a PKCS#8 private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MessageError("the provisioned TLS key is not a P-256 key")
    return key


def self_signed_certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A self-signed certificate (PEM) for the provisioned key; the client pins the key."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + TLS_CERT_LIFETIME)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_spki(cert_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate received from a TLS peer."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise MessageError("the TLS peer sent an unparsable certificate") from exc


def key_proof(tls_key_der: bytes) -> str:
    """What the client sends to show it holds the provisioned key (hex SHA-256)."""
    return hashlib.sha256(KEY_PROOF_DOMAIN + tls_key_der).hexdigest()
