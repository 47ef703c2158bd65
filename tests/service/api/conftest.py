"""API test helpers: settings on the private redis-server and a temp registry, a TestClient, cards on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.card import ModelCard
from models.store import ModelStore
from service.api.app import create_app
from service.settings import Settings

ADMIN_KEY = "admin-key-0123456789"
VIEWER_KEY = "viewer-key-0123456789"


def make_settings(redis_url: str, store_root: Path, **overrides: Any) -> Settings:
    return Settings(redis={"url": redis_url}, store={"root": store_root}, **overrides)


def add_model(store: ModelStore, name: str = "ffp", method: str = "ffp") -> str:
    """Register a card-only version (the API reads metadata, never weights); returns its version."""
    version = store.create_version(name)
    card = ModelCard(
        name=name,
        method=method,
        config={"name": method},
        input_spec={"height": 64, "width": 64, "channels": 1, "context": 4, "fps": None},
        signal_names=["neg_psnr"],
    )
    store.write_card(version, card)
    return version.version


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "registry")


@pytest.fixture
def make_client(redis_url: str, store: ModelStore) -> Iterator[Callable[..., TestClient]]:
    """Factory: make_client(api={...}) -> a started TestClient (lifespan run); all closed at teardown."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(redis_url, store.root, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """An app with no keys configured (dev): everything open."""
    return make_client()


@pytest.fixture
def keyed_client(make_client: Callable[..., TestClient]) -> TestClient:
    """An app with one viewer and one admin key."""
    return make_client(api={"viewer_keys": [VIEWER_KEY], "admin_keys": [ADMIN_KEY]})
