"""The rule for a password being set, in one place: the API's user create and update
(`NewPassword`), the CLI's `users create` and `users set-password`, and the first admin's
ADMIN_PASSWORD. Signing in does not apply it: a password set before the rule changed must
still get its holder in (to change it).

Imports nothing: the CLI checks a password before it loads the service.
"""

from __future__ import annotations

# Seed 001's rule, for every password an account holds, ADMIN_PASSWORD included.
MIN_PASSWORD_LENGTH = 8


def too_short(name: str = "Password") -> str:
    return f"{name} must be at least {MIN_PASSWORD_LENGTH} characters"


def check_new_password(password: str, name: str = "Password") -> str:
    """`password` unchanged, or a ValueError naming what is wrong with it (as `name`)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(too_short(name))
    # Eight spaces pass the length but are no secret (and easily typed by mistake).
    if not password.strip():
        raise ValueError(f"{name} must not be only whitespace")
    return password
