"""Model store references, aliases and the calibration map (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import calibrate, fit_calibration, smooth, to_unit
from models.card import ModelCard
from models.errors import ModelNotFoundError
from models.store import ModelStore


def _card(name: str) -> ModelCard:
    return ModelCard(name=name, method="ffp", config={}, input_spec={}, signal_names=["a"])


def test_versions_aliases_and_resolution(tmp_path):
    store = ModelStore(tmp_path)
    v1, v2 = store.create_version("m"), store.create_version("m")
    for v in (v1, v2):
        store.write_card(v, _card("m"))
    assert [v.version for v in store.versions("m")] == ["v1", "v2"]
    assert store.resolve("m").version == "v2"  # newest when no production alias
    store.promote("m@v1")
    assert store.resolve("m").version == "v1"
    assert store.resolve("m@production").version == "v1"
    assert store.resolve("m@v2").version == "v2"
    with pytest.raises(ModelNotFoundError, match="choices: v1, v2, production"):
        store.resolve("m@v9")
    with pytest.raises(ModelNotFoundError, match="models: m"):
        store.resolve("other")


@pytest.mark.parametrize("ref", ["../etc", "m@../../x", "M", "m@", "a/b"])
def test_references_cannot_escape_the_root(tmp_path, ref):
    with pytest.raises((ValueError, ModelNotFoundError)):
        ModelStore(tmp_path).resolve(ref)


def test_calibration_is_monotone_and_calibrated():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(4000, 2))
    cal = fit_calibration(normal, ["a", "b"], ema_alpha=1.0)
    fresh = rng.normal(size=(4000, 2))
    scores, _ = calibrate(cal, fresh)
    # About 1% of fresh normal frames exceed 0.99: the score is a false-alarm rate.
    assert 0.005 < np.mean(scores > 0.99) < 0.02
    grid = np.linspace(-50, 50, 2001)
    mapped = to_unit(cal, grid)
    assert np.all(np.diff(mapped) > 0)
    assert mapped.min() >= 0
    assert mapped.max() <= 1


def test_ema_is_causal_and_resumable():
    x = np.array([0.0, 1.0, 1.0, 0.0])
    assert smooth(x, 0.5).tolist() == [0.0, 0.5, 0.75, 0.375]
    # Scoring in two chunks with the carried state equals scoring at once.
    assert np.allclose(np.concatenate([smooth(x[:2], 0.5), smooth(x[2:], 0.5, state=0.5)]), smooth(x, 0.5))
