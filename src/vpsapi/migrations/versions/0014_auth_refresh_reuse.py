"""auth_sessions: the refresh token rotated last, let through for a short while

Revision ID: 0014_auth_refresh_reuse
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_auth_refresh_reuse"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a login not rotated since has no previous token to let through.
    op.add_column("auth_sessions", sa.Column("previous_refresh_jti", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("auth_sessions", "previous_refresh_jti")
