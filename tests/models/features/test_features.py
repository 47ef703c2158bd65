"""Feature cache and extraction with a tiny random I3D, and the weak split. (Training on caches: tests/models/train.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli.main import main
from models.components.i3d import snippet_features
from models.data.splits import load_split
from models.errors import DatasetError
from models.features.cache import FeatureCache, FeatureCacheError
from models.features.extract import extract_dataset, feature_index, i3d_encoder
from models.methods.gcl import Gcl, GclConfig

SIZE = 64  # the tiny gcl preset's frame size


@pytest.fixture(scope="module")
def tiny_method() -> Gcl:
    torch.manual_seed(0)
    return Gcl(GclConfig.tiny()).eval()


@pytest.fixture(scope="module")
def cache(tiny_method: Gcl, synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    root = tmp_path_factory.mktemp("features")
    template = feature_index(tiny_method.i3d, SIZE, "random:0", name="i3d-random")
    cache = FeatureCache.create_or_open(root, template)
    assert extract_dataset(synthetic_dataset, cache, i3d_encoder(tiny_method.i3d), SIZE) == 5
    return cache


def test_one_feature_per_16_frames_and_computed_once(
    cache: FeatureCache, tiny_method: Gcl, synthetic_dataset: Path
) -> None:
    assert sorted(cache.keys()) == ["test/01", "test/02", "train/01", "train/02", "train/03"]
    reopened = FeatureCache.open(cache.root, feature_dim=128)
    assert reopened.index.videos["train/01"].frames == 40
    assert reopened.load("train/01").shape == (2, 128)  # 40 frames -> 2 snippets, 8 frames without a feature
    # A second run finds everything cached and computes nothing.
    assert extract_dataset(synthetic_dataset, reopened, i3d_encoder(tiny_method.i3d), SIZE) == 0


def test_cached_features_equal_the_live_path(cache: FeatureCache, tiny_method: Gcl, synthetic_dataset: Path) -> None:
    """The method scoring a window of frames sees exactly the features the cache holds for that snippet."""
    from models.data.datasets import open_dataset
    from models.data.transforms import prepare, to_tensor

    video = open_dataset(synthetic_dataset, "test")[0]
    frames = to_tensor(prepare(video.reader.read_all(), tiny_method.input_spec))  # (40, 3, 64, 64)
    with torch.no_grad():
        live = tiny_method.features(frames[16:32][None])  # second snippet
        window_scores = tiny_method.score(frames[1:32][None])  # 15 context + 16 scored = that snippet
        cached_signals = tiny_method.snippet_signals(cache.load(f"test/{video.name}"))
    torch.testing.assert_close(live[0], cache.load(f"test/{video.name}")[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(window_scores[0, -1], cached_signals[1], rtol=1e-5, atol=1e-6)
    assert snippet_features(tiny_method.i3d, frames[:15], 16).shape == (0, 128)  # shorter than a snippet


def test_cache_errors_are_clear(cache: FeatureCache, tmp_path: Path, tiny_method: Gcl) -> None:
    with pytest.raises(FeatureCacheError, match="vigil features extract"):
        FeatureCache.open(tmp_path / "nothing")
    with pytest.raises(FeatureCacheError, match=r"holds 128-d .* expects 1024-d"):
        FeatureCache.open(cache.root, feature_dim=1024)
    with pytest.raises(FeatureCacheError, match="has no video 'test/99'"):
        cache.load("test/99")
    other = feature_index(tiny_method.i3d, SIZE, "random:1", name="i3d-random")
    with pytest.raises(FeatureCacheError, match="made differently"):
        FeatureCache.create_or_open(cache.root, other)
    with pytest.raises(ValueError, match=r"\(snippets, 128\)"):
        cache.write("train/x", torch.zeros(3, 64), frames=48)


def test_ped2_weak_split_is_disjoint(tmp_path: Path) -> None:
    split = load_split("ped2_weak")
    assert len(split.train.normal) == 14
    assert len(split.train.anomalous) == 6
    assert not set(split.test) & set(split.train_videos)
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: x\ntrain: {normal: [train/01]}\ncalibration: [train/02]\ntest: [train/01]\n")
    with pytest.raises(DatasetError, match="both 'train' and 'test'"):
        load_split(bad)
    with pytest.raises(DatasetError, match=r"built-in splits: .*ped2_weak"):
        load_split("no_such_split")


def test_cli_reports_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["features", "extract", "--dataset", str(tmp_path), "--out", str(tmp_path / "c"), "--weights", "nope"])
    assert code == 1
    assert "vigil weights convert-i3d" in capsys.readouterr().out
