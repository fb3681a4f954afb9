"""Object storage behind one small interface: presigned PUT/GET URLs, head, delete, seal, check.

Two backends with the same behaviour:
- `LocalStorage` (embedded default): files under `DATA_DIR/objects`, served by the app
  itself at `/api/objects/{key}?expires=<epoch>&sig=<hmac>`. The signature is
  HMAC-SHA256 over method, key and expiry, so a GET URL cannot be used to upload and a
  changed key or expiry is refused.
- `S3Storage`: any S3-compatible server through boto3 (SigV4, path-style addressing);
  the server itself checks the presigned URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urljoin

import structlog

from vpsapi.config import Settings, read_or_create_secret

log = structlog.get_logger(__name__)

OBJECTS_PATH = "/api/objects"
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._\-/]{0,511}$")


class InvalidKey(ValueError):
    pass


class SignatureError(Exception):
    """A local object URL that is not (or no longer) valid."""


class ObjectSealed(Exception):
    """An upload to an object made final with `seal`."""


def validate_key(key: str) -> str:
    """Keys are relative slash-separated names without empty, `.` or `..` parts."""
    parts = key.split("/")
    if not _KEY.match(key) or any(part in ("", ".", "..") for part in parts):
        raise InvalidKey(f"invalid object key {key!r}")
    return key


def absolute_url(url: str, base_url: str) -> str:
    """Local storage URLs are paths; S3 URLs are already absolute (urljoin keeps them)."""
    return urljoin(base_url, url)


# The media an object is served as itself, by its name's suffix. A table of our own, not the
# host's mime database: Debian's names `.ts` a Qt translation, and two hosts serving one
# bucket must sign the same type for the same clip.
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".ts": "video/mp2t",
    ".h264": "video/h264",
    ".264": "video/h264",
    ".h265": "video/h265",
    ".265": "video/h265",
    ".hevc": "video/h265",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".aac": "audio/aac",
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
INERT_TYPE = "application/octet-stream"


def served_media_type(key: str) -> str:
    """The type an object is served as, from its name, never from what its uploader said:
    media as itself, anything else (an uploaded .html or .svg) as an inert download, so a
    stored object cannot become a page on the origin serving it."""
    name = key.rsplit("/", 1)[-1].lower()
    suffix = name[name.rfind(".") :] if "." in name else ""
    return MEDIA_TYPES.get(suffix, INERT_TYPE)


@dataclass(frozen=True)
class ObjectInfo:
    size: int


class ObjectStorage(Protocol):
    backend: str

    def presign_put(self, key: str, expires_in: int) -> str: ...

    def presign_get(self, key: str, expires_in: int) -> str: ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None: ...

    async def seal(self, key: str) -> None:
        """The object is final: uploads to it are refused where the backend can (not S3,
        whose presigned PUT URLs stay valid until they expire)."""

    async def check(self) -> None:
        """Raise when the storage cannot be used (for the readiness probe)."""


def _sealed(path: Path) -> bool:
    try:
        return not path.stat().st_mode & stat.S_IWUSR
    except FileNotFoundError:
        return False


class LocalStorage:
    backend = "local"

    def __init__(self, root: Path, secret: bytes, base_url: str = "") -> None:
        self.root = root
        self.secret = secret
        self.base_url = base_url.rstrip("/")

    # ---- signing ------------------------------------------------------------------

    def _signature(self, method: str, key: str, expires: int) -> str:
        message = f"{method}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def _presign(self, method: str, key: str, expires_in: int) -> str:
        validate_key(key)
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "sig": self._signature(method, key, expires)})
        return f"{self.base_url}{OBJECTS_PATH}/{quote(key)}?{query}"

    def presign_put(self, key: str, expires_in: int) -> str:
        return self._presign("PUT", key, expires_in)

    def presign_get(self, key: str, expires_in: int) -> str:
        return self._presign("GET", key, expires_in)

    def verify(self, method: str, key: str, expires: str, signature: str) -> None:
        """Raise SignatureError unless the URL was signed by us for this method and key."""
        # ASCII only: "²" passes isdigit() and fails int(); compare_digest refuses
        # non-ASCII text (a TypeError), so the signature is compared as bytes.
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            raise SignatureError("Invalid signature")
        # HEAD is answered like GET, so a GET URL may also be used for HEAD.
        signed_method = "GET" if method == "HEAD" else method
        expected = self._signature(signed_method, key, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise SignatureError("Invalid signature")
        if int(expires) < time.time():
            raise SignatureError("Signature expired")

    # ---- files --------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def write(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store a streamed body; readers see the old object or the whole new one.
        ObjectSealed for a sealed object."""
        target = self.path_for(key)
        if _sealed(target):
            raise ObjectSealed(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        size = 0
        try:
            with staging.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    handle.write(chunk)
            if _sealed(target):  # sealed while this upload was under way
                raise ObjectSealed(key)
            os.replace(staging, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
        return size

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(size=self.path_for(key).stat().st_size)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()

    async def seal(self, key: str) -> None:
        # Read-only is the mark: it stays with the file (renames, backups) and goes with it.
        # A file system that will not take it (another owner's file, some network mounts)
        # leaves the object open to uploads, as S3's is, rather than failing the confirm.
        try:
            self.path_for(key).chmod(0o444)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("storage_seal_failed", key=key, error=str(exc))

    async def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".ready-{secrets.token_hex(4)}"
        probe.write_bytes(b"ok")
        probe.unlink()


class S3Storage:
    backend = "s3"

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        region: str,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 2},
            ),
        )

    def presign_put(self, key: str, expires_in: int) -> str:
        return self._presign("put_object", key, expires_in)

    def presign_get(self, key: str, expires_in: int) -> str:
        # S3 answers with the Content-Type the uploader sent (text/html, say) unless the
        # signed URL overrides it: as the embedded storage, the name decides.
        media_type = served_media_type(key)
        overrides = {"ResponseContentType": media_type}
        if media_type == INERT_TYPE:
            overrides["ResponseContentDisposition"] = "attachment"
        return self._presign("get_object", key, expires_in, overrides)

    def _presign(
        self, operation: str, key: str, expires_in: int, extra: dict[str, str] | None = None
    ) -> str:
        # Signing is local computation: no request to the server.
        url: str = self.client.generate_presigned_url(
            operation,
            Params={"Bucket": self.bucket, "Key": validate_key(key), **(extra or {})},
            ExpiresIn=expires_in,
        )
        return url

    async def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.to_thread(
                self.client.head_object, Bucket=self.bucket, Key=validate_key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(size=int(response["ContentLength"]))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def seal(self, key: str) -> None:
        """Nothing to do: a presigned PUT cannot be revoked (docs/devices.md)."""

    async def check(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)


def create_storage(settings: Settings) -> ObjectStorage:
    """S3 when S3_ENDPOINT and S3_BUCKET are set, else files under DATA_DIR/objects."""
    if settings.s3_endpoint and settings.s3_bucket:
        return S3Storage(
            settings.s3_endpoint,
            settings.s3_bucket,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            settings.s3_region,
        )
    data_dir = settings.ensure_data_dir()
    secret = read_or_create_secret(data_dir / "object-url-key")
    return LocalStorage(data_dir / "objects", secret.encode(), settings.public_url)
