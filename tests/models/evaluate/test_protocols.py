"""Paper and online protocols on constructed signals, plus the JSON/PNG report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.calibration import fit_calibration
from models.evaluate.events import anomalous_spans
from models.evaluate.metrics import roc_auc
from models.evaluate.protocols import VideoSignals, evaluate, paper_scores
from models.evaluate.report import load_signals, save_signals, write_eval


def _video(name: str, n: int, span: tuple[int, int], offset: float, context: int, seed: int) -> VideoSignals:
    """Signal 0 rises on the anomalous span; signal 1 is noise. Each video has its own baseline `offset`."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.uint8)
    labels[span[0] : span[1]] = 1
    sig = offset + rng.normal(0, 0.1, n) + 1.0 * labels
    noise = rng.normal(0, 1, n)
    return VideoSignals(name, np.stack([sig, noise], axis=1)[context:], labels)


def test_paper_scores_zscore_and_minmax() -> None:
    raw = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])
    # z-scores: [-1.22, 0, 1.22] and [-1.22, 1.22, 0]; weights (1, 0) keep signal 0 only
    assert paper_scores(raw, np.array([1.0, 0.0])).tolist() == pytest.approx([0.0, 0.5, 1.0])
    # equal weights: sums [-2a, a, a] (a = 1.22) -> min-max [0, 1, 1]
    assert paper_scores(raw, np.array([1.0, 1.0])).tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert paper_scores(np.array([[4.0], [4.0]]), np.array([1.0])).tolist() == [0.0, 0.0]  # flat: no NaN


def test_context_frames_are_dropped_not_padded() -> None:
    context = 4
    v = VideoSignals("a", np.array([[0.0], [1.0]]), np.array([1, 1, 1, 1, 0, 1], dtype=np.uint8))
    result, _scores = evaluate([v], context, ["s"], None)
    assert result.paper.num_frames == 2
    assert result.paper.num_anomalous == 1
    assert result.paper.micro_auc == pytest.approx(1.0)
    bad = VideoSignals("b", np.zeros((3, 1)), np.zeros(6, dtype=np.uint8))
    with pytest.raises(ValueError, match="video b: 3 scored frames but 2 labels after dropping the first 4"):
        evaluate([bad], context, ["s"], None)


def test_protocols_on_constructed_signals(tmp_path: Path) -> None:
    context = 2
    videos = [
        _video("01", 60, (30, 45), offset=0.0, context=context, seed=1),
        _video("02", 60, (10, 20), offset=3.0, context=context, seed=2),  # higher baseline: per-video norm helps
        _video("03", 50, (0, 0), offset=1.0, context=context, seed=3),  # all normal
    ]
    normal = np.concatenate([np.stack([np.random.default_rng(9).normal(1.5, 1.0, 200), np.zeros(200)], 1)])
    cal = fit_calibration(normal, ["sig", "noise"], weights=[1.0, 0.0], ema_alpha=1.0)
    result, scores = evaluate(videos, context, ["sig", "noise"], cal, model="m@v1", dataset="constructed")
    assert result.online is not None
    assert result.weights == [1.0, 0.0]
    assert result.paper.per_video_auc["03"] is None
    assert result.paper.per_video_auc["01"] == pytest.approx(1.0)
    # Online: no per-video statistics, so video 02's high baseline shows up as false alarms.
    assert result.online.micro_auc < result.paper.micro_auc
    # Online scores with ema_alpha=1 are a monotone map of signal 0: per-video ranking equals the raw signal's.
    labels01 = videos[0].labels[context:]
    assert result.online.per_video_auc["01"] == pytest.approx(roc_auc(labels01, videos[0].raw[:, 0]))
    assert all(s.min() >= 0 and s.max() <= 1 for s in scores["online"])
    assert result.summary()["online_micro_auc"] == result.online.micro_auc

    json_path, png_path = write_eval(result, scores, [v.labels for v in videos], ["01", "02", "03"], tmp_path)
    assert json_path.read_text().startswith("{")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = load_signals(save_signals(videos, tmp_path / "signals.npz"))
    assert [v.name for v in again] == ["01", "02", "03"]
    rerun, _ = evaluate(again, context, ["sig", "noise"], cal)
    assert rerun.paper.micro_auc == pytest.approx(result.paper.micro_auc, abs=1e-6)  # float32 storage


def test_without_calibration_online_is_skipped() -> None:
    v = _video("01", 30, (10, 20), 0.0, 0, 1)
    result, scores = evaluate([v], 0, ["sig", "noise"], None)
    assert result.online is None
    assert "no calibration" in result.online_skipped
    assert set(scores) == {"paper"}


def test_calibration_for_other_signals_is_rejected() -> None:
    cal = fit_calibration(np.random.default_rng(0).normal(size=(20, 1)), ["psnr"])
    with pytest.raises(ValueError, match="calibration covers signals"):
        evaluate([_video("01", 30, (10, 20), 0.0, 0, 1)], 0, ["sig", "noise"], cal)


def test_anomalous_spans() -> None:
    assert anomalous_spans(np.array([1, 1, 0, 0, 1, 0, 1])) == [(0, 2), (4, 5), (6, 7)]
    assert anomalous_spans(np.zeros(4)) == []


def test_snippet_frames_are_causal_online_and_published_for_the_paper_protocol() -> None:
    from models.evaluate.protocols import snippet_frames

    signals = np.array([[1.0], [2.0], [3.0]])  # snippets of frames 0-15, 16-31, 32-47 of a 50-frame video
    paper = snippet_frames(signals, 50, 16, causal=False)
    assert paper.shape == (48, 1)  # frames 0..47; 48, 49 have no snippet
    assert paper[0, 0] == 1.0  # frame 0 gets the snippet it starts (15 frames of its future)
    online = snippet_frames(signals, 50, 16, causal=True)  # frames 15..49
    assert online.shape == (35, 1)
    assert online[0, 0] == 1.0  # frame 15: the snippet ending at it
    assert online[1, 0] == 1.0  # frame 16: still the latest finished snippet (16-31 is not finished)
    assert online[16, 0] == 2.0  # frame 31: snippet 16-31 ends at it
    assert online[-1, 0] == 3.0  # frame 49: snippet 32-47


def test_snippet_metrics_align_labels_with_each_protocol() -> None:
    from models.calibration import fit_calibration
    from models.evaluate.protocols import snippet_metrics

    labels = {"v": np.r_[np.zeros(30), np.ones(18)].astype(np.uint8)}  # 48 frames, anomalous from frame 30
    snippet = np.array([[0.0], [0.5], [1.0]])  # the third snippet (frames 32-47) is the anomalous one
    calibration = fit_calibration(np.random.default_rng(0).normal(size=(50, 1)), ["s"])
    out = snippet_metrics(["s"], ["v"], labels, [snippet], [snippet], calibration, online_raw=True)
    assert out["frames"] == 48
    assert out["online_frames"] == 33  # frames 15..47
    # Paper: frames 30, 31 are anomalous but get snippet 2's 0.5 (as do normal frames 16-29): ties, not a miss.
    assert out["paper_s"]["micro_auc"] > 0.95
    # Online: frames 30..46 still carry 0.5 (snippet 32-47 has not ended); only frame 47 sees 1.0.
    assert out["online_raw_s"]["micro_auc"] < out["paper_s"]["micro_auc"]
