"""P2P service parameters sealed with AES-256-GCM under a rotating, named key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vpsapi.config import Settings, read_or_create_secret

NONCE_BYTES = 12


@dataclass(frozen=True)
class ParamKeys:
    current: str
    keys: dict[str, bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> ParamKeys:
        if settings.device_param_keys is None:
            settings.ensure_data_dir()
            raw = "k1:" + read_or_create_secret(settings.device_param_key_file)
        else:
            raw = settings.device_param_keys.get_secret_value()
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in raw.split(","):
            kid, sep, secret = item.strip().partition(":")
            if not sep or not kid or not secret:
                raise ValueError("DEVICE_PARAM_KEYS must look like kid:secret[,kid:secret]")
            # Any secret string becomes a 256-bit AES key.
            keys[kid] = hashlib.sha256(secret.encode()).digest()
            order.append(kid)
        return cls(current=order[0], keys=keys)

    def key_id(self, token: str) -> str:
        return token.partition(".")[0]

    def seal(self, payload: dict[str, object]) -> str:
        nonce = os.urandom(NONCE_BYTES)
        aad = self.current.encode()
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, json.dumps(payload).encode(), aad)
        return f"{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, token: str) -> dict[str, object]:
        kid, _, data = token.partition(".")
        blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        plain = AESGCM(self.keys[kid]).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode())
        result: dict[str, object] = json.loads(plain)
        return result


def service_param_payload(
    real_device_id: str, supplier: str | None, cluster: str | None
) -> dict[str, object]:
    return {
        "deviceId": real_device_id,
        "timestamp": int(time.time()),
        "secret": secrets.token_hex(16),
        "supplier": supplier or "default",
        "cluster": cluster or "default",
    }
