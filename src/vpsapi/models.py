"""Every table, so Alembic and tests see the whole schema."""

from vpsapi.auth import models as auth_models
from vpsapi.core.db import Base
from vpsapi.devices import models as devices_models

metadata = Base.metadata

__all__ = ["auth_models", "devices_models", "metadata"]
