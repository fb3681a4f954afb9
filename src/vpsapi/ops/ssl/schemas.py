from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

CertificateStatus = Literal["valid", "expiring", "expired", "invalid"]


class CertificateOut(BaseModel):
    """A certificate file as parsed; field names of the original VPS manager kept
    (`domain`, `issuer`, `expires`, `status`, `auto_renew`, `cert_path`, `key_path`)."""

    domain: str = Field(description="file stem in SSL_CERT_DIR (`wildcard.x` for `*.x`)")
    names: list[str] = Field(description="host names the certificate covers (SANs, else CN)")
    subject: str | None = None
    common_name: str | None = None
    sans: list[str] = Field(default_factory=list)
    issuer: str | None = Field(default=None, description="issuer organisation or CN")
    issuer_dn: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    expires: datetime | None = Field(default=None, description="same as not_after")
    days_left: int | None = None
    status: CertificateStatus
    key_match: bool | None = Field(
        default=None, description="the key file belongs to the certificate; null: no key file"
    )
    cert_path: str
    key_path: str | None = None
    is_default: bool = Field(description="the DEFAULT_SSL_CERT/DEFAULT_SSL_KEY pair")
    auto_renew: bool = Field(description="issued here by ACME and renewed automatically")
    source: Literal["letsencrypt", "custom", "default"]
    serial: str | None = None
    fingerprint_sha256: str | None = None
    chain_length: int | None = None
    error: str | None = None


class CertificateList(BaseModel):
    certificates: list[CertificateOut]


class CertificateUpload(BaseModel):
    """The original's body: `{domain, cert_content, key_content}` (PEM)."""

    domain: str = Field(min_length=1, max_length=253, examples=["app.example.com"])
    cert_content: str = Field(
        min_length=1, max_length=256 * 1024, description="certificate, then its chain (PEM)"
    )
    key_content: str = Field(min_length=1, max_length=64 * 1024, description="private key (PEM)")


class UploadResult(BaseModel):
    message: str
    domain: str
    cert_path: str
    key_path: str
    certificate: CertificateOut


class CertificateContent(BaseModel):
    """The public certificate (chain) only; the key never leaves the server."""

    domain: str
    cert_content: str
    source: str
    cert_path: str


class DomainEntry(BaseModel):
    domain: str = Field(description="a covered name; `*.example.com` for a wildcard")
    wildcard: bool
    certificate: str = Field(description="the certificate's domain (file stem)")
    source: str
    cert_path: str
    key_path: str | None = None
    not_after: datetime | None = None
    days_left: int | None = None
    status: CertificateStatus
    is_default: bool


class DomainList(BaseModel):
    domains: list[DomainEntry]
    domain: str | None = Field(default=None, description="the `?domain=` asked about")
    covered: bool | None = Field(
        default=None, description="with `?domain=`: some certificate covers it"
    )


class LetsEncryptRequest(BaseModel):
    """`{domain}` or `{domains: [...]}`; the first name names the files."""

    domain: str | None = Field(default=None, max_length=253)
    domains: list[str] | None = Field(default=None, max_length=100)
    email: EmailStr | None = Field(
        default=None, description="ACME account contact (default LETSENCRYPT_EMAIL)"
    )


class CertificateJobAccepted(BaseModel):
    message: str
    job_id: str
    jobId: str
    status: str
    status_url: str
    progress_url: str
    domain: str
    domains: list[str]
