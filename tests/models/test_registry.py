"""Method registry errors: unknown names and config keys say what would work; duplicates fail at registration."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from models import create_method, get_method, list_methods, register_method
from models.errors import DuplicateMethodError, UnknownMethodError
from models.methods.ffp import FfpConfig


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownMethodError) as info:
        get_method("ffq")
    message = str(info.value)
    assert "'ffq'" in message
    for name in list_methods():
        assert name in message


def test_create_method_from_unknown_name_fails_the_same_way() -> None:
    with pytest.raises(UnknownMethodError, match=r"valid names: .*ffp"):
        create_method({"name": "nope"})


def test_duplicate_registration_is_an_error_and_keeps_the_original() -> None:
    original = get_method("ffp").builder
    with pytest.raises(DuplicateMethodError, match="'ffp' is registered twice"):
        register_method("ffp", config=FfpConfig)(lambda cfg: None)  # type: ignore[arg-type,return-value]
    assert get_method("ffp").builder is original


@pytest.mark.parametrize("name", list_methods())
def test_unknown_config_key_is_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="not_a_field"):
        create_method({"name": name, "not_a_field": 1})


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ValueError, match="valid presets: paper, small, tiny"):
        get_method("ffp").make_config("huge")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lambda_flow": 2.0}, "lambda_flow must be 0"),
        ({"size": 100}, "divisible by"),
        ({"width": 100}, r"width 100 must be divisible by .* = 8; e.g. width=96"),
        ({"channels": 2}, "channels"),
    ],
)
def test_ffp_config_errors_explain_the_fix(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        FfpConfig(**overrides)  # type: ignore[arg-type]


def test_ffp_width_keeps_an_aspect_and_scores_it() -> None:
    method = create_method(get_method("ffp").make_config("tiny", width=48, signals=("frame", "patch"), patch=8))
    spec = method.input_spec
    assert (spec.height, spec.width) == (32, 48)
    window = torch.rand(2, spec.context + 3, spec.channels, 32, 48)
    signals, maps = method.score_with_maps(window)
    assert signals.shape == (2, 3, 2)
    assert maps.shape == (2, 3, 32, 48)


def test_paper_preset_matches_the_published_generator() -> None:
    method = create_method(get_method("ffp").make_config("paper"))
    spec = method.input_spec
    assert (spec.height, spec.width, spec.channels, spec.context) == (256, 256, 3, 4)
    widths = [enc[0].out_channels for enc in method.generator.encoders]  # type: ignore[union-attr,index]
    assert widths == [64, 128, 256, 512]
