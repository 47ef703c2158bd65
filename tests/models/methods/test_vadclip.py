"""vadclip: config checks, LGT-Adapter masking, snippet histories, MIL losses and prompts, weak training through
`vigil train`, registry round trip, CLIP checkpoint and feature-cache errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import save_file

from models.errors import IncompatibleCheckpointError, UnsafeWeightsError
from models.evaluate.metrics import roc_auc
from models.features.cache import FeatureCache, FeatureCacheError, FeatureIndex
from models.io import load_model
from models.methods.vadclip import Vadclip, VadclipConfig, to_sequence
from models.pretrained import clip as clip_weights
from models.store import ModelStore
from models.train.config import load_train_config
from models.train.loop import train
from models.train.objectives.vadclip import PromptTextEncoder, VadclipObjective, VadclipOptim, top_k_bce, top_k_mean
from models.train.sources import WeakVideo, check_cache

TINY_YAML = Path(__file__).resolve().parents[3] / "models" / "configs" / "vadclip_tiny.yaml"


def tiny(**changes: object) -> Vadclip:
    torch.manual_seed(0)
    return Vadclip(VadclipConfig.tiny().model_copy(update=changes)).eval()


def test_config_errors_say_what_fits() -> None:
    with pytest.raises(ValidationError, match="a_branch=false"):
        VadclipConfig(backbone="i3d-kinetics-400")
    with pytest.raises(ValidationError, match="takes 224px images"):
        VadclipConfig(size=112)
    with pytest.raises(ValidationError, match="unknown CLIP architecture"):
        VadclipConfig(clip_arch="ViT-Z-99")
    with pytest.raises(ValidationError, match="at least one anomaly class"):
        VadclipConfig.tiny().model_validate({**VadclipConfig.tiny().model_dump(), "class_names": ["normal"]})
    assert VadclipConfig.i3d().feature_dim == 1024
    assert VadclipConfig.paper().feature_dim == 512


def test_padding_is_masked_so_a_sequence_scores_the_same_alone_or_padded() -> None:
    method = tiny()
    features = torch.randn(1, 10, 32)
    valid = torch.ones(1, 10, dtype=torch.bool)
    alone = method.sequence_signals(features, valid)
    padded = torch.cat([features, torch.randn(1, 7, 32) * 5], dim=1)  # garbage in the padding
    mask = torch.cat([valid, torch.zeros(1, 7, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(method.sequence_signals(padded, mask)[:, :10], alone, rtol=0, atol=1e-5)


def test_score_uses_the_stride_16_history_inside_the_window() -> None:
    method = tiny()
    window = torch.rand(1, 15 + 40, 3, 64, 64)
    with torch.no_grad():
        out = method.score(window)  # frames 15..54 of the window
        features = method.snippet_features(window)[0]  # (40, 32): the snippet ending at each scored frame
        # Snippet feature = mean of the 16 per-frame CLIP embeddings ending at the frame.
        per_frame = method.frame_embeddings(window[0])
        torch.testing.assert_close(features[0], per_frame[:16].mean(0))
        torch.testing.assert_close(features[39], per_frame[39:55].mean(0))
        # Frame 39 of the scored frames: history = scored frames 7, 23, 39 (newest last).
        expected = method.score_history([features[[7, 23, 39]]])
        torch.testing.assert_close(out[0, 39], expected[0])
        # Batching sequences of different lengths does not change any of them.
        seqs = [features[[39]], features[[7, 23, 39]], features[[23, 39]]]
        together = method.score_history(seqs)
        for i, seq in enumerate(seqs):
            torch.testing.assert_close(together[i], method.score_history([seq])[0])
        with pytest.raises(ValueError, match=r"history holds 1\.\.8"):
            method.score_history([features[:9]])


def test_top_k_mean_over_valid_snippets() -> None:
    values = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.99], [0.2, 0.3, 0.4, 0.0, 0.0]])
    valid = torch.tensor([[True] * 4 + [False], [True] * 3 + [False] * 2])
    # k = len // 16 + 1 = 1 for short videos: the highest valid value (the padded 0.99 is ignored).
    torch.testing.assert_close(top_k_mean(values, valid), torch.tensor([0.9, 0.4]))
    long = torch.arange(40.0)[None]  # k = 40 // 16 + 1 = 3 -> mean of 39, 38, 37
    torch.testing.assert_close(top_k_mean(long, torch.ones(1, 40, dtype=torch.bool)), torch.tensor([38.0]))


def test_top_k_bce_equals_bce_of_the_top_k_mean_and_recovers_from_saturation() -> None:
    logits = torch.randn(3, 40)
    valid = torch.ones(3, 40, dtype=torch.bool)
    valid[2, 20:] = False
    labels = torch.tensor([1.0, 0.0, 1.0])
    naive = torch.nn.functional.binary_cross_entropy(top_k_mean(torch.sigmoid(logits), valid), labels)
    torch.testing.assert_close(top_k_bce(logits, valid, labels), naive)
    # A normal video whose logits saturated at +40 still gets a gradient pushing them down.
    saturated = torch.full((1, 10), 40.0, requires_grad=True)
    top_k_bce(saturated, torch.ones(1, 10, dtype=torch.bool), torch.tensor([0.0])).backward()
    assert saturated.grad is not None
    assert saturated.grad.max() > 0.5


def test_prompts_put_name_and_eot_where_vadclip_does_and_train() -> None:
    torch.manual_seed(0)
    encoder = PromptTextEncoder(clip_weights.TINY_ARCH, None, ("normal", "car accident"), prefix=3, postfix=2)
    text = encoder()
    assert text.shape == (2, 32)
    assert not torch.allclose(text[0], text[1])
    text.sum().backward()
    grad = encoder.prompt.grad
    assert grad is not None
    # "car accident" is 2 word tokens: SOT, 3 prompt slots, 2 words, 2 prompt slots, EOT at 1 + 3 + 2 + 2 = 8.
    # The causal text transformer reads out at EOT, so only slots before it get gradients from that class.
    assert grad[1:4].abs().sum() > 0
    assert grad[6:8].abs().sum() > 0
    assert grad[9:].abs().sum() == 0
    assert not encoder.token_embedding.weight.requires_grad


def _mil_videos(seed: int) -> tuple[list[WeakVideo], torch.Tensor, np.ndarray]:
    """Normal videos: snippets from one cluster. Anomalous videos: mostly normal snippets, 2 from another cluster."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(32, generator=g)
    odd = centre + torch.randn(32, generator=g) * 1.5
    videos = []
    for i in range(16):
        feats = centre + torch.randn(12, 32, generator=g) * 0.5
        label = int(i >= 8)
        if label:
            feats[4:6] = odd + torch.randn(2, 32, generator=g) * 0.5
        videos.append(WeakVideo(f"v{i}", feats, label))
    test = torch.cat([centre + torch.randn(40, 32, generator=g) * 0.5, odd + torch.randn(10, 32, generator=g) * 0.5])
    return videos, test, np.r_[np.zeros(40), np.ones(10)]


def test_weak_training_finds_the_anomalous_snippets_from_video_labels_only() -> None:
    videos, test, labels = _mil_videos(0)
    method = tiny()
    objective = VadclipObjective(method, 150, VadclipOptim(lr=3e-3))
    normal, anomalous = videos[:8], videos[8:]
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        picks = [normal[i] for i in torch.randint(8, (4,), generator=generator)]
        losses = objective.step(picks + [anomalous[i] for i in torch.randint(8, (4,), generator=generator)])
    assert set(losses) == {"c", "a", "sep"}
    objective.finish()
    method.eval()
    assert method.class_text.abs().sum() > 0  # trained text features are stored for serving
    with torch.no_grad():
        signals = method.score_history([test[i : i + 1] for i in range(len(test))]).numpy()
    # Measured 1.00 for both branches at this seed; untrained heads sit near 0.5.
    assert roc_auc(labels, signals[:, 0]) > 0.9
    assert roc_auc(labels, signals[:, 1]) > 0.8


def test_causal_and_published_signals_of_cached_snippets() -> None:
    method = tiny()
    features = torch.randn(11, 32)
    with torch.no_grad():
        paper, online = method.feature_signals(features, causal=False), method.feature_signals(features, causal=True)
        assert paper.shape == online.shape == (11, 2)
        # Online, snippet 7 sees snippets 0..7 only (history 8); the paper protocol sees the whole chunk (all 11).
        torch.testing.assert_close(online[7], method.score_history([features[0:8]])[0])
        torch.testing.assert_close(online[10], method.score_history([features[3:11]])[0])
        whole = method.sequence_signals(features[None], torch.ones(1, 11, dtype=torch.bool))[0]
        torch.testing.assert_close(paper, whole)
    seq, valid = to_sequence(torch.arange(10.0)[:, None], 4)  # longer than 4: averaged into 4 bins
    assert valid.all()
    assert seq[:, 0].tolist() == [0.5, 3.0, 5.5, 8.0]


def _split_file(tmp_path: Path) -> Path:
    split = {
        "dataset": "synthetic",
        "train": {"normal": ["train/01", "train/02"], "anomalous": ["test/02"]},
        "calibration": ["train/03"],
        "test": ["test/01"],  # its anomaly (frames 20-29) lies where the causal protocol scores (frames 15-39)
    }
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(split))
    return path


@pytest.mark.slow
def test_trains_with_vigil_train_and_round_trips(synthetic_dataset: Path, tmp_path: Path) -> None:
    cfg = load_train_config(
        TINY_YAML,
        [
            f"data.root={synthetic_dataset}",
            f"data.split={_split_file(tmp_path)}",
            f"out_dir={tmp_path / 'run'}",
            f"register.registry={tmp_path / 'reg'}",
        ],
    )
    result = train(cfg)
    assert result.ref == "vadclip-tiny@v1"
    assert set(result.metrics["train"]["losses"]) == {"c", "a", "sep"}
    assert {"paper_c_prob", "paper_a_prob", "online"} <= set(result.metrics["test"])
    method, card, _ = load_model(ModelStore(tmp_path / "reg"), "vadclip-tiny")
    assert card.calibration is not None
    assert [s.name for s in card.calibration.signals] == ["c_prob", "a_prob"]
    window = torch.rand(1, 15 + 8, 3, 64, 64)
    again, _, _ = load_model(ModelStore(tmp_path / "reg"), "vadclip-tiny@v1")
    with torch.no_grad():
        scores = method.score(window)
        torch.testing.assert_close(scores, again.score(window), rtol=0, atol=0)
    assert scores.shape == (1, 8, 2)
    # The frozen CLIP image tower is saved with the model and was not trained.
    torch.manual_seed(cfg.seed)
    initial = Vadclip(VadclipConfig.tiny())
    for key, value in initial.visual.state_dict().items():  # type: ignore[union-attr]
        torch.testing.assert_close(method.visual.state_dict()[key], value, msg=key)  # type: ignore[union-attr]


def test_wrong_clip_checkpoint_is_refused_with_what_it_holds(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny_clip = clip_weights.build_clip(clip_weights.TINY_ARCH)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(path))
    with pytest.raises(IncompatibleCheckpointError, match=r"does not fit the ViT-B-32.*width 32, patch_size 16"):
        clip_weights.load_clip_weights(clip_weights.build_clip("ViT-B-32"), path, "ViT-B-32")
    # The right architecture loads, a pickle is refused, and a plain state dict converts to safetensors.
    clip_weights.load_clip_weights(clip_weights.build_clip(clip_weights.TINY_ARCH), path, clip_weights.TINY_ARCH)
    pickled = tmp_path / "tiny.bin"
    torch.save(tiny_clip.state_dict(), pickled)
    with pytest.raises(UnsafeWeightsError, match="convert-clip"):
        clip_weights.read_checkpoint(pickled)
    converted = clip_weights.convert_checkpoint(pickled, tmp_path / "converted.safetensors")
    assert set(clip_weights.read_checkpoint(converted)) == set(tiny_clip.state_dict())
    evil = tmp_path / "evil.bin"
    torch.save({"x": object()}, evil)
    with pytest.raises(UnsafeWeightsError, match="weights-only"):
        clip_weights.convert_checkpoint(evil, tmp_path / "evil.safetensors")


def test_feature_cache_missing_or_of_another_dimension_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FeatureCacheError, match="no feature cache at"):
        FeatureCache.open(tmp_path / "nowhere")
    index = FeatureIndex(
        backbone="i3d-kinetics-400", feature_dim=1024, snippet_frames=16, weights_sha256="x", preprocessing="-"
    )
    cache = FeatureCache.create_or_open(tmp_path / "cache", index)
    with pytest.raises(FeatureCacheError, match=r"1024-d i3d-kinetics-400 features but vadclip reads 32-d clip-"):
        check_cache(cache, tiny(), "vadclip")


@pytest.mark.slow
def test_clip_feature_cache_matches_the_method_and_trains(synthetic_dataset: Path, tmp_path: Path) -> None:
    """`vigil features extract --backbone clip` caches what the method's own encoder computes; training reads it."""
    from cli.main import main
    from models.data.datasets import open_dataset
    from models.data.transforms import prepare, to_tensor

    torch.manual_seed(0)
    weights = tmp_path / "tiny-clip.safetensors"
    state = clip_weights.build_clip(clip_weights.TINY_ARCH).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    out = tmp_path / "cache"
    args = ["features", "extract", "--dataset", str(synthetic_dataset), "--out", str(out), "--backbone", "clip"]
    assert main([*args, "--clip-arch", clip_weights.TINY_ARCH, "--weights", str(weights), "--device", "cpu"]) == 0
    cache = FeatureCache.open(out)
    assert cache.index.backbone == "clip-vigil-tiny"
    method = Vadclip(VadclipConfig.tiny().model_copy(update={"backbone_weights": str(weights)}))
    method.load_pretrained()
    video = next(v for v in open_dataset(synthetic_dataset, "test") if v.name == "02")
    with torch.no_grad():
        expected = method.encode_snippets(to_tensor(prepare(video.reader.read_all(), method.input_spec)))
    torch.testing.assert_close(cache.load("test/02"), expected)
    cfg = load_train_config(
        TINY_YAML,
        [
            f"data.root={synthetic_dataset}",
            f"data.split={_split_file(tmp_path)}",
            f"data.features={out}",
            f"method.backbone_weights={weights}",
            "steps=5",
            "register.enabled=false",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    result = train(cfg)
    assert result.ref is None
    assert result.metrics["train"]["features"] == str(out)


def test_offline_scoring_gives_every_frame_its_whole_history() -> None:
    """`vigil score`/`vigil eval` cut a video into windows of 16; each frame must still see its full history,
    as the live worker's Redis buffer gives it, i.e. the same as scoring the whole clip as one window."""
    from models.inference import score_frames

    method = tiny()
    frames = (torch.rand(15 + 100, 64, 64, 3) * 255).to(torch.uint8).numpy()
    whole = method.score(torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255)[0].detach().numpy()
    for window in (16, 7):
        np.testing.assert_allclose(score_frames(method, frames, batch_size=3, window=window), whole, atol=2e-6)


def test_video_scored_in_chunks_keeps_the_history_across_chunks(tmp_path: Path) -> None:
    """`score_video` decodes long videos in chunks; a history reaching into the previous chunk must not be cut."""
    from models.data.transforms import prepare
    from models.data.video import open_video
    from models.inference import score_video
    from tests.synthetic import render_frames, write_video

    method = tiny()
    path = write_video(tmp_path / "long.mp4", render_frames(15 + 150, (64, 64), (90, 120), seed=3)[0])
    frames = prepare(open_video(path).read_all(), method.input_spec)
    whole = method.score(torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255)[0].detach().numpy()
    pts, raw = score_video(method, open_video(path), batch_size=2, window=8, chunk_frames=32)
    assert len(pts) == 165
    np.testing.assert_allclose(raw, whole, atol=2e-6)
