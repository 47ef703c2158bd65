"""Models routes: list, show (404 names the models that exist), promote (admin only)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from models.store import ModelStore
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model


def test_list_and_show(client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    add_model(store, "ffp")
    listed = client.get("/models").json()
    assert listed == [{"name": "ffp", "versions": ["v1", "v2"], "aliases": {}, "resolves_to": "v2"}]
    shown = client.get("/models/ffp@v1").json()
    assert shown["ref"] == "ffp@v1"
    assert shown["card"]["method"] == "ffp"


def test_unknown_model_is_404_naming_existing(client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    r = client.get("/models/mnad")
    assert r.status_code == 404
    assert "ffp" in r.json()["detail"]
    r = client.get("/models/ffp@v9")
    assert r.status_code == 404
    assert "v1" in r.json()["detail"]


def test_bad_ref_is_422(client: TestClient) -> None:
    assert client.get("/models/Bad..Name!").status_code == 422


def test_promote_moves_alias(keyed_client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    add_model(store, "ffp")
    r = keyed_client.post("/models/ffp/promote", json={"version": "v1"}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200, r.text
    assert r.json()["aliases"] == {"production": "v1"}
    assert store.resolve("ffp").version == "v1"
    listed = keyed_client.get("/models", headers={"X-API-Key": VIEWER_KEY}).json()
    assert listed[0]["resolves_to"] == "v1"


def test_promote_needs_admin(keyed_client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    r = keyed_client.post("/models/ffp/promote", json={"version": "v1"}, headers={"X-API-Key": VIEWER_KEY})
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    assert store.aliases("ffp") == {}


def test_promote_rejects_version_like_alias_and_foreign_ref(client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    r = client.post("/models/ffp/promote", json={"version": "v1", "alias": "v2"})
    assert r.status_code == 422
    assert "production" in r.json()["detail"]
    r = client.post("/models/ffp/promote", json={"version": "other@v1"})
    assert r.status_code == 422
    r = client.post("/models/ffp/promote", json={"version": "v1", "extra": 1})
    assert r.status_code == 422
    assert "extra" in r.text
