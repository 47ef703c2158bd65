"""API keys: 401 without a key, 403 for a weak one, and the message names the header and the role."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.security import Role, authorize, role_of
from service.settings import ApiSettings
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY


def test_missing_key_is_401_naming_header(keyed_client: TestClient) -> None:
    r = keyed_client.get("/models")
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["detail"]
    assert "viewer" in r.json()["detail"]


def test_unknown_key_is_401(keyed_client: TestClient) -> None:
    r = keyed_client.get("/models", headers={"X-API-Key": "nope"})
    assert r.status_code == 401
    assert "unknown key" in r.json()["detail"]


@pytest.mark.parametrize("key", [VIEWER_KEY, ADMIN_KEY])
def test_viewer_and_admin_may_read(keyed_client: TestClient, key: str) -> None:
    assert keyed_client.get("/models", headers={"X-API-Key": key}).status_code == 200


def test_health_is_open(keyed_client: TestClient) -> None:
    assert keyed_client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("viewer", "admin", "key", "needed", "ok"),
    [
        ([], [], None, Role.ADMIN, True),  # dev: nothing configured, all open
        ([], ["a"], None, Role.VIEWER, True),  # reads stay open without viewer keys
        ([], ["a"], None, Role.ADMIN, False),
        (["v"], ["a"], "v", Role.ADMIN, False),
        (["v"], ["a"], "a", Role.VIEWER, True),
        (["v"], ["a"], "v", Role.VIEWER, True),
        (["v"], ["a"], "va", Role.VIEWER, False),  # a prefix of a key is not the key
    ],
)
def test_authorize_table(viewer: list[str], admin: list[str], key: str | None, needed: Role, ok: bool) -> None:
    settings = ApiSettings(viewer_keys=[SecretStr(k) for k in viewer], admin_keys=[SecretStr(k) for k in admin])
    if ok:
        authorize(key, needed, settings)
    else:
        with pytest.raises(Exception, match="X-API-Key"):
            authorize(key, needed, settings)


def test_role_of_admin_key() -> None:
    settings = ApiSettings(viewer_keys=[SecretStr("v")], admin_keys=[SecretStr("a")])
    assert role_of("a", settings) is Role.ADMIN
    assert role_of("v", settings) is Role.VIEWER
    assert role_of("", settings) is Role.NONE
