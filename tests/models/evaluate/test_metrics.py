"""ROC, AUC, EER and macro AUC against hand-computed values and a brute-force pairwise AUC."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluate.metrics import (
    chance_macro_auc,
    eer,
    macro_auc,
    padded_macro_auc,
    per_video_auc,
    roc_auc,
    roc_curve,
)


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of an anomalous frame > score of a normal frame), ties count half (Mann-Whitney U)."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_auc_hand_computed() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, s) == pytest.approx(0.75)  # 3 of the 4 (anomalous, normal) pairs are ordered right
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thr[0] == np.inf
    assert thr[1:].tolist() == [0.8, 0.4, 0.35, 0.1]


def test_ties_count_half() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9])
    # pairs: (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.2) = 1, (0.9 vs both) = 2  ->  3.5 / 4
    assert roc_auc(y, s) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.5)


def test_matches_pairwise_auc_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(np.uint8)
    s = np.round(rng.random(500) + 0.4 * y, 1)  # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    fpr_all, tpr_all, _ = roc_curve(y, s, drop_intermediate=False)
    assert len(fpr) <= len(fpr_all)
    assert np.trapezoid(tpr, fpr) == pytest.approx(np.trapezoid(tpr_all, fpr_all))


def test_eer_hand_computed() -> None:
    assert eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.5)
    assert eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(0.0)
    # ROC (0,0) (0,1/3) (1/2,1/3) (1/2,2/3) (1/2,1) (1,1): the miss rate falls past 1/2 while fpr = 1/2
    y = np.array([1, 0, 1, 1, 0])
    s = np.array([0.9, 0.8, 0.2, 0.7, 0.1])
    assert eer(y, s) == pytest.approx(0.5)
    # A tie makes a diagonal segment from (fpr 0, miss 1/2) to (fpr 1/2, miss 0): they meet at 1/4.
    assert eer(np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.25)


def test_undefined_and_bad_input() -> None:
    with pytest.raises(ValueError, match="every one of the 3 frames is normal"):
        roc_auc(np.zeros(3), np.arange(3.0))
    with pytest.raises(ValueError, match="3 labels, 2 scores"):
        roc_auc(np.array([0, 1, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc(np.array([0, 1]), np.array([np.nan, 0.2]))


def test_per_video_and_macro_auc() -> None:
    labels = [np.array([0, 0, 1, 1]), np.array([0, 0, 0])]
    scores = [np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.2, 0.9, 0.1])]
    assert per_video_auc(labels, scores) == [pytest.approx(0.75), None]
    # Unpadded: only video 1 has both classes.
    assert macro_auc(labels, scores) == pytest.approx(0.75)
    assert macro_auc([np.array([1, 1])], [np.array([0.1, 0.2])]) is None
    # video 1 padded: [0]+y+[1] with scores [0]+s+[max]: pos {0.35, 0.8, max} vs neg {0, 0.1, 0.4} -> 8/9
    # video 2 padded: one anomalous (max) above every normal -> 1.0
    assert padded_macro_auc(labels, scores) == pytest.approx((8 / 9 + 1.0) / 2)


def test_chance_floor_of_the_padded_macro_auc_is_far_above_one_half() -> None:
    """Ped2-like labels: one normal video, one all-anomalous, one mixed. Random scores score 0.5 unpadded; padded,
    the single-class videos alone give 1.0 each."""
    rng = np.random.default_rng(0)
    labels = [np.zeros(150, np.uint8), np.ones(150, np.uint8), (np.arange(180) > 60).astype(np.uint8)]
    assert chance_macro_auc(labels, padded=False) == pytest.approx(0.5, abs=0.02)
    assert chance_macro_auc(labels, padded=True) > 0.8
    assert chance_macro_auc([np.ones(10, np.uint8)], padded=False) is None
    random = [rng.random(len(y)) for y in labels]
    assert padded_macro_auc(labels, random) > 0.8 > (macro_auc(labels, random) or 0) + 0.2
