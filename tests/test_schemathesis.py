"""Property-based checks of the core and jobs endpoints against /openapi.json on a
real server: no 5xx, every status is documented, and every body matches its schema."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from support import SHARED_API_KEY
from vpsapi.config import Settings

pytestmark = pytest.mark.schemathesis

_tmp = Path(tempfile.mkdtemp(prefix="vpsapi-schemathesis-"))


def _start() -> tuple[str, object]:
    from support import start_server

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=_tmp / "data",
        rate_limit_enabled=False,
        environment="test",
    )
    server = start_server(settings, _tmp)
    # Started at import: a run that collects this module but runs none of its tests
    # (`--collect-only`, `-k`) never reaches the fixture below, so stop it at exit too.
    atexit.register(shutil.rmtree, _tmp, ignore_errors=True)
    atexit.register(server.stop)
    return server.base_url, server


if os.environ.get("VPSAPI_TEST_BACKEND", "embedded") == "embedded":
    BASE_URL, SERVER = _start()
    schema = schemathesis.openapi.from_url(BASE_URL + "/openapi.json").include(
        path_regex=r"^/(health|api/auth/(token|service-param)|api/v1/(info|search|me|api-keys|jobs)"
        r"|api/jobs|api/hello|api/vuid)"
    )
else:  # one run is enough: the contract does not depend on the backend
    schema = None


@pytest.fixture(scope="module", autouse=True)
def _stop_server():
    yield
    if schema is not None:
        SERVER.stop()  # type: ignore[attr-defined]
    shutil.rmtree(_tmp, ignore_errors=True)


def _token() -> str:
    response = httpx.post(BASE_URL + "/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return str(response.json()["token"])


if schema is not None:

    @schema.parametrize()
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def test_api_contract(case) -> None:
        headers = {"Authorization": f"Bearer {_token()}", "X-API-Key": SHARED_API_KEY}
        # The bar: never a 5xx, and bodies match the documented schemas; and no
        # status the document does not name (a generated client would not expect it).
        case.call_and_validate(
            headers=headers,
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        )
