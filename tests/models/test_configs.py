"""Every YAML in models/configs validates and builds its method; overrides and ${ENV} expansion behave."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models import create_method
from models.train.config import apply_overrides, expand_env, load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "models" / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"ffp_ped2.yaml", "ffp_ped2_small.yaml", "ffp_tiny.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates_and_builds(path: Path) -> None:
    cfg = load_train_config(path)
    method = create_method(cfg.method)
    assert method.input_spec.height > 0
    assert cfg.data.num_val >= 1


def test_ped2_configs_point_at_the_shared_dataset_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_PED2", raising=False)
    cfg = load_train_config(Path("models/configs/ffp_ped2_small.yaml").resolve())
    assert cfg.data.root == Path("../shared/datasets/ucsd_ped2")
    monkeypatch.setenv("VIGIL_PED2", "/data/ped2")
    assert load_train_config(CONFIGS[0]).data.root == Path("/data/ped2")


def test_paper_config_is_paper_size() -> None:
    cfg = load_train_config(next(p for p in CONFIGS if p.name == "ffp_ped2.yaml"))
    assert cfg.method.model_dump()["size"] == 256
    assert cfg.method.model_dump()["base_channels"] == 64
    assert cfg.optim.lr_drop_step == 7000


def test_overrides_use_dotted_keys_and_yaml_values() -> None:
    data = {"method": {"name": "ffp", "preset": "tiny"}, "data": {"root": "x"}}
    out = apply_overrides(data, ["optim.generator_lr=2e-4", "steps=500", "method.batch_norm=true", "register.name=a"])
    assert out["optim"] == {"generator_lr": 2e-4}
    assert out["steps"] == 500
    assert out["method"] == {"name": "ffp", "preset": "tiny", "batch_norm": True}
    assert out["register"] == {"name": "a"}
    assert data["method"] == {"name": "ffp", "preset": "tiny"}  # the input is not modified


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=1", r"unknown config key 'optim.lr'; valid keys: .*optim.generator_lr"),
        ("optim.lr_g=1", r"unknown config key 'optim.lr_g'; valid keys: .*optim.discriminator_lr"),
        ("method.depth=3", r"unknown config key 'method.depth'; valid keys: .*method.base_channels"),
        ("stepz=3", r"valid keys: .*steps"),
        ("steps", "must look like key=value"),
    ],
)
def test_bad_overrides_say_what_would_work(override: str, match: str) -> None:
    data = {"method": {"name": "ffp"}, "data": {"root": "x"}}
    with pytest.raises(ValueError, match=match):
        apply_overrides(data, [override])


def test_override_values_are_still_validated() -> None:
    path = next(p for p in CONFIGS if p.name == "ffp_tiny.yaml")
    with pytest.raises(ValidationError, match="steps"):
        load_train_config(path, ["steps=-1"])


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TEST_A", "/a")
    monkeypatch.delenv("VIGIL_TEST_B", raising=False)
    tree = {"x": "${VIGIL_TEST_A}/y", "z": ["${VIGIL_TEST_B:-dflt}"], "n": 3}
    assert expand_env(tree) == {"x": "/a/y", "z": ["dflt"], "n": 3}
    with pytest.raises(ValueError, match="VIGIL_TEST_B is not set"):
        expand_env("${VIGIL_TEST_B}")


def test_missing_config_file_names_the_examples(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="models/configs"):
        load_train_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("method", "keys"),
    [
        ("ffp", {"generator_lr", "discriminator_lr", "lr_drop_step"}),
        ("dast", {"lr", "lr_drop_step"}),
        ("f2lm", {"generator_lr", "discriminator_lr", "destroyer_lr"}),
        ("gcl", {"generator_lr", "discriminator_lr"}),
        ("vadclip", {"lr", "weight_decay", "lr_milestones"}),
    ],
)
def test_optimiser_settings_are_named_by_what_each_method_trains(method: str, keys: set[str]) -> None:
    from models.train.config import valid_keys

    optim = {k.removeprefix("optim.") for k in valid_keys({"method": {"name": method}}) if k.startswith("optim.")}
    assert keys <= optim
    assert not {"lr_g", "lr_d"} & optim


def test_another_methods_optimiser_key_is_refused() -> None:
    path = next(p for p in CONFIGS if p.name == "dast_tiny.yaml")
    with pytest.raises(ValidationError, match="generator_lr"):
        load_train_config(path, ["data.root=x"]).model_validate(
            {"method": {"name": "dast"}, "data": {"root": "x"}, "optim": {"generator_lr": 1e-3}}
        )
