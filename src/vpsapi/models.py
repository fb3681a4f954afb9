"""Every table, so Alembic and tests see the whole schema."""

from vpsapi.auth import models as auth_models
from vpsapi.citypulse import models as citypulse_models
from vpsapi.core.db import Base
from vpsapi.devices import models as devices_models
from vpsapi.jobs import models as jobs_models
from vpsapi.ops.audit import models as ops_audit_models
from vpsapi.ops.nginx import models as ops_nginx_models

metadata = Base.metadata

__all__ = [
    "auth_models",
    "citypulse_models",
    "devices_models",
    "jobs_models",
    "metadata",
    "ops_audit_models",
    "ops_nginx_models",
]
