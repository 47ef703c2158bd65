"""flowmem: per-cell motion/appearance memories; fitted with `vigil train` (one pass), it finds the synthetic
'cyclist' and round-trips through the registry with its memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.data.datasets import open_dataset
from models.data.transforms import prepare
from models.evaluate.metrics import roc_auc
from models.inference import score_frames, score_frames_with_maps
from models.io import load_model
from models.methods.flowmem import Flowmem, FlowmemConfig, _neighbours, cell_levels, greedy_coreset, persistent
from models.store import ModelStore
from models.train.config import TrainConfig, load_train_config
from models.train.loop import train

TINY_YAML = Path(__file__).resolve().parents[3] / "models" / "configs" / "flowmem_tiny.yaml"


def _tiny_config(dataset: Path, tmp_path: Path, *overrides: str) -> TrainConfig:
    """The tiny flowmem config on `dataset`, its run and registry under `tmp_path`."""
    return load_train_config(
        TINY_YAML,
        [f"data.root={dataset}", f"out_dir={tmp_path / 'run'}", f"register.registry={tmp_path / 'reg'}", *overrides],
    )


def test_config_checks_the_grid() -> None:
    with pytest.raises(ValidationError, match="multiple of 8"):
        FlowmemConfig(cell=12)
    with pytest.raises(ValidationError, match="multiples of cell=16"):
        FlowmemConfig(width=360)
    with pytest.raises(ValidationError, match="cannot exceed capacity"):
        FlowmemConfig(memory=64, capacity=32)
    assert FlowmemConfig.paper().grid == FlowmemConfig.small().grid == (15, 22)
    with pytest.raises(ValidationError, match=r"multiple of 16 .*label_blocks=8"):
        FlowmemConfig(label_blocks=8, cell=8)
    with pytest.raises(ValidationError, match="80 channels after label_blocks=8; leave appearance_dim out"):
        FlowmemConfig(label_blocks=8, appearance_dim=40)
    assert FlowmemConfig(appearance_dim=40).appearance_channels == 40  # what versions registered before carry


def test_deeper_appearance_features_are_one_per_16_pixel_cell() -> None:
    config = FlowmemConfig(height=32, width=48, cell=16, capacity=8, memory=4, label_blocks=11)
    assert config.appearance_channels == 112
    method = Flowmem(config).eval()
    frames = torch.rand(1, 3, 3, 32, 48)
    with torch.no_grad():
        _, appearance = method.cell_features(frames)
        maps = method.backbone(frames[0, 1:])  # (2, 112, 2, 3): stride 16
    assert appearance.shape == (1, 2, 6, 112)
    torch.testing.assert_close(appearance[0], maps.flatten(2).transpose(1, 2))


def test_neighbourhood_and_coreset() -> None:
    index = _neighbours(3, 4, 1)  # 3 x 4 grid
    assert index.shape == (12, 9)
    assert set(index[5].tolist()) == {0, 1, 2, 4, 5, 6, 8, 9, 10}  # cell (1, 1): its 3 x 3 block
    assert set(index[0].tolist()) == {0, 1, 4, 5}  # a corner: clamped, repeats
    points = torch.tensor([[[0.0], [0.1], [5.0], [0.2], [10.0]]])  # (1 cell, 5, 1)
    chosen = greedy_coreset(points, 3)[0, :, 0].tolist()
    assert chosen == [0.0, 10.0, 5.0]  # farthest first: the extremes cover the set
    assert greedy_coreset(points[:, :1], 3)[0, :, 0].tolist() == [0.0, 0.0, 0.0]  # too few: repeats


def test_cell_levels_put_a_quiet_cells_anomaly_above_a_busy_cells_normal_variation() -> None:
    rng = np.random.default_rng(0)
    busy, quiet, lawn = rng.uniform(0, 1.0, 1000), rng.uniform(0, 0.1, 1000), np.zeros(1000)
    middle, fourth = rng.uniform(0, 0.2, 1000), rng.uniform(0, 0.15, 1000)
    levels = cell_levels(torch.tensor(np.stack([busy, quiet, lawn, middle, fourth], axis=1)))
    assert levels[0] == pytest.approx(0.99, abs=0.02)  # its 99th percentile
    # The quiet cell and the lawn are raised to the median cell's level (the fifth cell's), never to 0.
    assert levels[1] == levels[2] == levels[4] == pytest.approx(0.1485, abs=0.003)
    # A distance of 0.5 in the quiet cell against the busy cell's normal 0.9: raw, the busy cell is the frame's
    # largest; in units of each cell's level, the quiet cell's anomaly is.
    frame = torch.tensor([0.9, 0.5, 0.0, 0.1, 0.1])
    assert frame.argmax() == 0
    assert (frame / levels).argmax() == 1
    assert cell_levels(torch.zeros(10, 3)).tolist() == [1.0, 1.0, 1.0]  # no variation at all: raw distances


def test_normalise_cell_divides_by_the_fitted_levels(synthetic_dataset: Path, tmp_path: Path) -> None:
    train(_tiny_config(synthetic_dataset, tmp_path, "method.normalise=cell"))
    method, _, _ = load_model(ModelStore(tmp_path / "reg"), "flowmem-tiny")
    assert isinstance(method, Flowmem)
    assert method.config.normalise == "cell"
    assert (method.motion_level > 0).all()
    assert (method.appearance_level > 0).all()
    assert method.appearance_level.unique().numel() > 1  # fitted per cell, not left at 1
    raw = Flowmem(method.config.model_copy(update={"normalise": "none"}))
    raw.load_state_dict(method.state_dict())
    video = next(iter(open_dataset(synthetic_dataset, "test")))
    window = torch.from_numpy(prepare(video.reader.read_all()[:9], method.input_spec)).permute(0, 3, 1, 2)
    window = window[None].float() / 255
    with torch.no_grad():
        m, a = method.cell_scores(window)
        m_raw, a_raw = raw.cell_scores(window)
    torch.testing.assert_close(m, m_raw / method.motion_level)
    torch.testing.assert_close(a, a_raw / method.appearance_level)
    # A version fitted before the levels existed loads with level 1 (raw distances), as it scored then.
    old = {k: v for k, v in method.state_dict().items() if not k.endswith("_level")}
    legacy = Flowmem(method.config)
    legacy.load_state_dict(old)
    assert legacy.motion_level.eq(1).all()
    assert legacy.appearance_level.eq(1).all()


def test_joint_signal_is_high_where_one_cell_is_unusual_in_both_kinds() -> None:
    config = FlowmemConfig.tiny().model_copy(update={"signals": ("joint", "motion", "appearance")})
    method = Flowmem(config)
    assert method.signal_names == ("joint_knn", "motion_knn", "appearance_knn")
    method.motion_level.fill_(0.5)  # the median cell's normal level of each kind
    method.appearance_level.fill_(4.0)
    # Frame 0: cell 0's flow and cell 1's look are each at twice their normal level; frame 1: both in cell 2.
    motion, appearance = torch.zeros(1, 2, 24), torch.zeros(1, 2, 24)  # (B, frames, cells of the 4 x 6 grid)
    motion[0, 0, 0], appearance[0, 0, 1] = 1.0, 8.0
    motion[0, 1, 2], appearance[0, 1, 2] = 1.0, 8.0
    signals = method.frame_signals(motion, appearance)
    torch.testing.assert_close(signals[0, :, 0], torch.tensor([2.0, 4.0]))  # joint: 2 + 0 against 2 + 2
    torch.testing.assert_close(signals[0, :, 1:], torch.tensor([[1.0, 8.0], [1.0, 8.0]]))  # each kind: no difference
    with pytest.raises(ValidationError, match="must not repeat"):
        FlowmemConfig(signals=("motion", "motion"))


def test_joint_signal_fits_scores_and_refuses_a_version_without_levels(synthetic_dataset: Path, tmp_path: Path) -> None:
    train(_tiny_config(synthetic_dataset, tmp_path, "method.signals=[motion,appearance,joint]"))
    method, card, _ = load_model(ModelStore(tmp_path / "reg"), "flowmem-tiny")
    assert isinstance(method, Flowmem)
    assert card.calibration is not None
    assert [s.name for s in card.calibration.signals] == ["motion_knn", "appearance_knn", "joint_knn"]
    video = next(iter(open_dataset(synthetic_dataset, "test")))
    assert video.labels is not None
    frames = prepare(video.reader.read_all(), method.input_spec)
    raw = score_frames(method, frames)
    window = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
    with torch.no_grad():
        m, a = method.cell_scores(window)
    joint = (m / method.motion_level.median() + a / method.appearance_level.median()).amax(dim=2)[0]
    np.testing.assert_allclose(raw[:, 2], joint.numpy(), rtol=1e-4)
    np.testing.assert_allclose(raw[:, :2], torch.stack([m.amax(2), a.amax(2)], 2)[0].numpy(), rtol=1e-4)
    assert roc_auc(video.labels[1:], raw[:, 2]) > 0.9  # the racing block (test video 0: frames 20-29)
    old = {k: v for k, v in method.state_dict().items() if not k.endswith("_level")}
    with pytest.raises(ValueError, match="joint signal needs the normal levels"):
        Flowmem(method.config).load_state_dict(old)


@pytest.mark.parametrize("step", [1, 2])
def test_flow_step_reads_its_context_and_measures_speed_per_frame(step: int) -> None:
    method = Flowmem(FlowmemConfig(height=64, width=64, cell=16, capacity=8, memory=4, flow_step=step)).eval()
    assert method.input_spec.context == step
    # A smooth texture sliding 1.5 px a frame to the right: the speed per frame is the same whatever the step.
    rng = np.random.default_rng(0)
    texture = rng.random((64, 160)).astype(np.float32)
    texture = torch.nn.functional.avg_pool2d(torch.from_numpy(texture)[None, None], 5, 1, 2)[0, 0]
    frames = torch.stack([texture[:, int(60 - 1.5 * t) : int(60 - 1.5 * t) + 64] for t in range(6)])  # (T, H, W)
    frames = frames[None, :, None].expand(1, 6, 3, 64, 64)
    with torch.no_grad():
        motion, appearance = method.cell_features(frames)
    assert motion.shape[:2] == appearance.shape[:2] == (1, 6 - step)
    mean_speed = motion[0, :, [5, 6, 9, 10], 2].mean()  # the 4 inner cells of the 4 x 4 grid: their mean speed
    assert mean_speed == pytest.approx(1.5, abs=0.3)
    with pytest.raises(ValidationError):
        FlowmemConfig(flow_step=0)


def test_persist_keeps_an_object_crossing_cells_and_drops_a_one_frame_spike() -> None:
    grid = (3, 6)
    distances = torch.zeros(1, 4, 18)
    for t in range(4):  # an object in row 0 moving one cell to the right per frame
        distances[0, t, t] = 5.0
    distances[0, 2, 15] = 9.0  # flow noise: one frame in one cell (row 2, column 3)
    distances[0, 1:3, 17] = 3.0  # two frames in a far cell (row 2, column 5)
    two = persistent(distances, grid, 2)
    assert two.shape == (1, 3, 18)
    assert two[0, :, [1, 2, 3]].diagonal().tolist() == [5.0, 5.0, 5.0]  # frames 1-3: the object keeps its score
    assert two[0, 1, 15] == 0  # the spike (frame 2) did not persist
    assert two[0, :, 17].tolist() == [0.0, 3.0, 0.0]  # two frames persist over a window of two, frame 2 only
    three = persistent(distances, grid, 3)
    assert three.shape == (1, 2, 18)
    assert three[0, :, 17].tolist() == [0.0, 0.0]  # ... not over three
    assert three[0, :, [2, 3]].diagonal().tolist() == [5.0, 5.0]  # two frames back, two cells away: still found
    distances[0, 0, 0] = 0.0  # an object that jumped two cells in one frame (1 -> 3) is not one object
    distances[0, 2, 2], distances[0, 3, 3] = 0.0, 5.0
    assert persistent(distances, grid, 2)[0, 2, 3] == 0
    torch.testing.assert_close(persistent(distances, grid, 1), distances)


def test_motion_frames_average_each_cells_motion_over_the_last_frames() -> None:
    config = FlowmemConfig(height=32, width=48, cell=8, capacity=8, memory=4)
    single, averaged = Flowmem(config).eval(), Flowmem(config.model_copy(update={"motion_frames": 3})).eval()
    assert averaged.input_spec.context == 3
    assert config.model_copy(update={"motion_frames": 3, "persist": 2, "flow_step": 2}).input_spec.context == 5
    frames = torch.rand(2, 6, 3, 32, 48)
    with torch.no_grad():
        m1, a1 = single.cell_features(frames)  # frames 1..5
        m3, a3 = averaged.cell_features(frames)  # frames 3..5
    assert m3.shape == (2, 3, 24, 4)
    torch.testing.assert_close(m3, (m1[:, :3] + m1[:, 1:4] + m1[:, 2:5]) / 3)
    torch.testing.assert_close(a3, a1[:, 2:])  # appearance stays the frame's own


def test_persist_adds_its_frames_to_the_context() -> None:
    config = FlowmemConfig(height=32, width=48, cell=8, capacity=8, memory=4, persist=3)
    assert config.input_spec.context == 3
    assert config.model_copy(update={"flow_step": 2}).input_spec.context == 4
    method = Flowmem(config).eval()
    with torch.no_grad():
        signals = method.score(torch.rand(2, 7, 3, 32, 48))
    assert signals.shape == (2, 4, 2)  # 7 frames, 3 of them context
    with pytest.raises(ValidationError):
        FlowmemConfig(persist=0)


def test_fits_with_persist_and_motion_frames_from_the_frames_its_features_need(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    train(_tiny_config(synthetic_dataset, tmp_path, "method.persist=2", "method.motion_frames=2"))
    method, _, _ = load_model(ModelStore(tmp_path / "reg"), "flowmem-tiny")
    assert isinstance(method, Flowmem)
    assert (method.config.persist, method.config.motion_frames) == (2, 2)
    assert method.motion_memory.abs().sum() > 0
    video = next(iter(open_dataset(synthetic_dataset, "test")))
    frames = prepare(video.reader.read_all(), method.input_spec)
    assert score_frames(method, frames).shape == (len(frames) - 3, 2)


def test_fits_in_one_pass_finds_the_fast_block_and_round_trips(synthetic_dataset: Path, tmp_path: Path) -> None:
    result = train(_tiny_config(synthetic_dataset, tmp_path))
    assert result.ref == "flowmem-tiny@v1"
    train_metrics = result.metrics["train"]
    assert train_metrics["steps"] == 20  # epochs=1: 2 training videos x 39 clips / batch 4
    method, card, _ = load_model(ModelStore(tmp_path / "reg"), "flowmem-tiny")
    assert card.calibration is not None
    assert method.motion_memory.abs().sum() > 0  # the memory travels with the registered version
    scores, labels, hits = [], [], []
    for video, span in zip(open_dataset(synthetic_dataset, "test"), [(20, 30), (5, 15)], strict=True):
        assert video.labels is not None
        frames = prepare(video.reader.read_all(), method.input_spec)
        raw, maps = score_frames_with_maps(method, frames, side=1000)  # side >= the input: maps at full size
        torch.testing.assert_close(raw, score_frames(method, frames), rtol=0, atol=0)
        scores.append(raw)
        labels.append(video.labels[1:])
        hits += [_hot_under_the_racer(maps[t - 1], t - span[0]) for t in range(*span)]
    raw, y = np.concatenate(scores), np.concatenate(labels)
    # The bright block races at 7-5 px/frame where the grey one walks at 2: motion and appearance both see it.
    assert roc_auc(y, raw[:, 0]) > 0.9
    assert roc_auc(y, raw[:, 1]) > 0.9
    # ... and the map is hot where it is (a random cell: half the time).
    assert np.mean(hits) >= 0.8, hits


def _hot_under_the_racer(heat: np.ndarray, k: int) -> bool:
    """Whether the cell of a 32x48 map under the centre of the racing block of tests/synthetic.py (drawn at 64x64,
    8 pixels a side), k frames into its run, is hotter than the map's median cell. Not its peak: at this size DIS
    smears a jump of 5-7 pixels over a quarter of the frame, so the hottest motion cell can lie a few cells away."""
    x, y = min(56, (k * 7) % 56), min(56, (k * 5) % 56)  # its corner at 64x64
    row, col = int((y + 4) * 32 / 64), int((x + 4) * 48 / 64)
    return bool(heat[row, col] > np.median(heat))
