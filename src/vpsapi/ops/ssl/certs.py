"""Read, check and store certificate/key pairs (PEM), with `cryptography`; no HTTP here."""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from vpsapi.core.errors import BadRequest, Unprocessable

# One DNS label; a name is labels joined by dots (no trailing dot, no wildcard).
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
# A certificate's file stem: a host name, or `wildcard.<name>` for `*.<name>`.
_STEM = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
WILDCARD_STEM_PREFIX = "wildcard."


def is_hostname(name: str) -> bool:
    return len(name) <= 253 and HOSTNAME.match(name) is not None


def is_ip_address(name: str) -> bool:
    """An IPv4 or IPv6 address (bracketed too, as in a URL), or a name that URL parsers
    and resolvers read as IPv4 (`127.1`): no top-level domain is a number."""
    bare = name.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        last_label = bare.rstrip(".").rpartition(".")[2]
        return last_label.isascii() and last_label.isdigit()
    return True


def cert_stem(domain: str) -> str:
    """The file stem for a domain: `*.example.com` is stored as `wildcard.example.com`."""
    stem = WILDCARD_STEM_PREFIX + domain[2:] if domain.startswith("*.") else domain
    if len(stem) > 253 or not _STEM.match(stem):
        raise BadRequest(
            f"invalid domain {domain!r}: use a host name such as example.com or *.example.com"
        )
    return stem.lower()


def covers(pattern: str, name: str) -> bool:
    """True when a certificate name covers `name`; `*.example.com` covers exactly one
    more label (`a.example.com`, not `example.com` nor `a.b.example.com`)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


@dataclass
class CertificateInfo:
    """What a certificate file says about itself (and whether its key matches)."""

    subject: str
    common_name: str | None
    sans: list[str]
    issuer: str
    issuer_name: str
    not_before: datetime
    not_after: datetime
    serial: str
    fingerprint_sha256: str
    chain_length: int
    key_match: bool | None = None
    names: list[str] = field(default_factory=list)

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def describe(chain: list[x509.Certificate]) -> CertificateInfo:
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [str(v) for v in san.value.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in san.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    common_name = _attribute(leaf.subject, NameOID.COMMON_NAME)
    issuer_name = (
        _attribute(leaf.issuer, NameOID.ORGANIZATION_NAME)
        or _attribute(leaf.issuer, NameOID.COMMON_NAME)
        or leaf.issuer.rfc4514_string()
    )
    return CertificateInfo(
        subject=leaf.subject.rfc4514_string(),
        common_name=common_name,
        sans=sans,
        issuer=leaf.issuer.rfc4514_string(),
        issuer_name=issuer_name,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=format(leaf.serial_number, "x"),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        chain_length=len(chain),
        names=sans or ([common_name] if common_name else []),
    )


_PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def certificate_blocks(pem: bytes) -> bytes:
    """Only the certificates of a PEM text, each written again from what was parsed:
    whatever else it holds (a key pasted beside them, comments) reaches neither the
    public file nor the content endpoint, and an old label (`X509 CERTIFICATE`) comes out
    as nginx's usual one."""
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return b""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)


def holds_private_key(pem: bytes) -> bool:
    return _PEM_PRIVATE_KEY.search(pem) is not None


def parse_chain(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle, leaf first; each must be issued by the next."""
    if holds_private_key(pem):
        # The certificate file is world-readable and its content served to any user.
        raise Unprocessable(
            "the certificate holds a private key: send the key as key_content, apart"
        )
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise Unprocessable(f"the certificate is not valid PEM: {exc}") from exc
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise Unprocessable(
                f"the certificate chain is broken: {child.subject.rfc4514_string()!r} is not "
                f"signed by the next certificate {parent.subject.rfc4514_string()!r}"
            ) from exc
    return chain


def parse_key(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # encrypted: nginx would ask for a passphrase at start
        raise Unprocessable("the private key is encrypted; upload it without a passphrase") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Unprocessable("the private key is not a valid PEM private key") from exc


def _public_bytes(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def key_matches(leaf: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return _public_bytes(leaf) == _public_bytes(key)


def validate_pair(cert_pem: bytes, key_pem: bytes) -> CertificateInfo:
    """Refuse anything nginx could not serve: unparseable PEM, a broken chain, a key
    that is not the certificate's, an expired certificate."""
    chain = parse_chain(cert_pem)
    key = parse_key(key_pem)
    if not key_matches(chain[0], key):
        raise Unprocessable("the private key does not match the certificate")
    info = describe(chain)
    info.key_match = True
    if info.not_after <= datetime.now(UTC):
        raise Unprocessable(f"the certificate expired on {info.not_after.isoformat()}")
    return info


def check_covers(info: CertificateInfo, domain: str) -> None:
    """Refuse a certificate stored under a domain it does not name: a site pointed at that
    file would serve a certificate every browser rejects."""
    if not any(covers(name, domain) for name in info.names):
        names = ", ".join(info.names) or "no host name"
        raise Unprocessable(f"the certificate is for {names}, not {domain}")


def inspect_files(cert_path: Path, key_path: Path | None) -> CertificateInfo:
    """Describe a stored certificate; `key_match` is None when there is no key file."""
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    info = describe(chain)
    if key_path is not None and key_path.is_file():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (TypeError, ValueError, UnsupportedAlgorithm):
            info.key_match = False
        else:
            info.key_match = key_matches(chain[0], key)
    return info
