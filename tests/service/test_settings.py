"""Settings refuse unsafe combinations with a message that says what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


@pytest.mark.parametrize(
    ("host", "admin_keys", "ok"),
    [
        ("127.0.0.1", [], True),
        ("localhost", [], True),
        ("::1", [], True),
        ("0.0.0.0", [], False),
        ("10.1.2.3", [], False),
        ("0.0.0.0", ["a-long-admin-key"], True),
    ],
)
def test_writes_without_admin_key_only_on_loopback(host: str, admin_keys: list[str], ok: bool) -> None:
    api = {"host": host, "admin_keys": admin_keys}
    if ok:
        assert Settings(api=api).api.host == host
    else:
        with pytest.raises(ValidationError, match="VIGIL_API__ADMIN_KEYS"):
            Settings(api=api)


def test_prod_needs_an_admin_key() -> None:
    with pytest.raises(ValidationError, match="VIGIL_ENV=prod needs at least one admin key"):
        Settings(env="prod")


def test_vigil_api_refuses_an_open_public_bind(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["api", "--host", "0.0.0.0"]) == 2
    assert "VIGIL_API__ADMIN_KEYS" in capsys.readouterr().err


def test_the_dataset_variables_the_training_configs_read_are_not_refused_as_settings() -> None:
    """`VIGIL_PED2=... vigil train models/configs/...` (README, RESULTS) must not fail on what the config reads."""
    import re

    from service.settings import CONFIG_VARS, unknown_env_vars

    configs = (Path(__file__).resolve().parents[2] / "models" / "configs").glob("*.yaml")
    read = {m for path in configs for m in re.findall(r"\$\{(VIGIL_[A-Z0-9_]+)", path.read_text())}
    assert read == CONFIG_VARS
    assert unknown_env_vars(dict.fromkeys(read, "/data")) == []
    assert unknown_env_vars({"VIGIL_PED3": "/data"}) == ["VIGIL_PED3"]


def test_health_settings_nest_one_level_deeper_and_typos_are_refused() -> None:
    from service.settings import unknown_env_vars

    env = {"VIGIL_HEALTH__FROZEN__MIN_S": "2.5", "VIGIL_HEALTH__ENABLED": "true"}
    assert unknown_env_vars(env) == []
    typos = {"VIGIL_HEALTH__FROZEN__MINS": "1", "VIGIL_HEALTH__BLURR__ENABLED": "0", "VIGIL_WORKER__MAX_BATCH__X": "1"}
    assert unknown_env_vars(typos) == sorted(typos)
    settings = Settings.model_validate({"health": {"frozen": {"min_s": 2.5}}})
    assert settings.health.frozen.min_s == 2.5
    with pytest.raises(ValueError, match=r"health\.frozen\.min_s"):
        Settings.model_validate({"health": {"frozen": {"min_s": -1}}})
