"""The backbone benchmark runs each path on every size it reports and finds the eval path equal to the plain one."""

from __future__ import annotations

import pytest

from bench import backbone


def test_every_size_times_three_paths_with_equal_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    rows = backbone.bench_backbone(batch=1, rounds=1)
    assert [row["input"] for row in rows] == [f"{label} {h}x{w}" for label, h, w in backbone.SIZES]
    for row in rows:
        for path in ("eval", "eval_one_chunk", "plain"):
            assert row[f"{path}_ms_per_frame"] > 0  # type: ignore[operator]
        assert row["max_abs_diff_eval_vs_plain"] < 1e-3  # type: ignore[operator]
    assert capsys.readouterr().out.count('"input"') == len(backbone.SIZES)
