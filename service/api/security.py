"""API-key roles: viewers read; operators also act on alerts and cameras' calibration (feedback, relearning);
admins also change configuration (cameras, models, jobs). Keys are compared in constant time."""

from __future__ import annotations

import enum
import hmac

from pydantic import SecretStr

from service.settings import ApiSettings

API_KEY_HEADER = "X-API-Key"


class Role(enum.IntEnum):
    """Ordered so that a higher role includes the rights of the lower ones."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


class AuthError(Exception):
    """A request without the key its endpoint needs; `missing` picks 401 (no key) over 403 (key too weak)."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def _matches(given: str, keys: list[SecretStr]) -> bool:
    # Compare against every key without stopping early, so timing says nothing about which key (or prefix) matched.
    given_bytes = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.get_secret_value().encode())
    return found


def role_of(key: str | None, settings: ApiSettings) -> Role:
    """The role a key grants; NONE for no key or an unknown one."""
    if not key:
        return Role.NONE
    if _matches(key, settings.admin_keys):
        return Role.ADMIN
    if _matches(key, settings.operator_keys):
        return Role.OPERATOR
    if _matches(key, settings.viewer_keys):
        return Role.VIEWER
    return Role.NONE


def required_role(needed: Role, settings: ApiSettings) -> Role:
    """What a request must present: nothing when no keys guard that role (dev), else the role itself.

    Reads are open while no key of any kind is configured, or only admin keys guard writes and no viewer keys
    exist; writes (operator and admin actions) are open only when no admin key exists, which `Settings` refuses
    outside VIGIL_ENV=dev. With admin keys but no operator keys, operator actions need an admin key.
    """
    if needed in (Role.ADMIN, Role.OPERATOR) and not settings.admin_keys:
        return Role.NONE
    if needed is Role.VIEWER and not settings.viewer_keys:
        return Role.NONE
    return needed


def authorize(key: str | None, needed: Role, settings: ApiSettings) -> Role:
    """Return the caller's role, or raise AuthError saying which header and role would work."""
    need = required_role(needed, settings)
    have = role_of(key, settings)
    if have >= need:
        return have
    role_name = {Role.ADMIN: "an admin", Role.OPERATOR: "an operator or admin"}.get(need, "a viewer, operator or admin")
    if not key:
        msg = f"missing {API_KEY_HEADER} header: this endpoint needs {role_name} key"
        raise AuthError(msg, missing=True)
    if have is Role.NONE:
        msg = f"the {API_KEY_HEADER} header holds an unknown key: this endpoint needs {role_name} key"
        raise AuthError(msg, missing=True)
    held = "an operator" if have is Role.OPERATOR else "a viewer"
    msg = f"the key in {API_KEY_HEADER} is {held} key: this endpoint needs {role_name} key"
    raise AuthError(msg, missing=False)
