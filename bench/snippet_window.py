"""Live cost of a snippet-history model (VadCLIP) per window: frozen backbone vs the adapter over full histories.

    .venv/bin/python bench/snippet_window.py --preset small --window 8 --rounds 3

A live window holds 15 context + W scored frames. The backbone encodes every frame of it (CLIP) or one 16-frame
snippet per scored frame (I3D); then the LGT-Adapter and heads score W sequences of `history` snippets, which
is what the Redis history adds. Both are timed in this process on random weights (cost does not depend on
them), and the ratio of the two is printed: the history's share of the per-window work.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from models.methods.vadclip import Vadclip, VadclipConfig


def best_of(rounds: int, fn: object) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", choices=list(VadclipConfig.PRESETS))
    parser.add_argument("--window", type=int, default=8, help="scored frames per window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method = Vadclip(getattr(VadclipConfig, args.preset)()).eval()
    spec = method.input_spec
    window = torch.rand(1, spec.context + args.window, 3, spec.height, spec.width)
    full = [torch.randn(method.history_snippets, method.config.feature_dim) for _ in range(args.window)]
    with torch.inference_mode():
        method.snippet_features(window)  # warm-up
        backbone_s = best_of(args.rounds, lambda: method.snippet_features(window))
        history_s = best_of(args.rounds, lambda: method.score_history(full))
    print(
        json.dumps(
            {
                "preset": args.preset,
                "backbone": method.config.backbone,
                "window_frames": args.window,
                "history_snippets": method.history_snippets,
                "backbone_ms_per_window": round(backbone_s * 1000, 1),
                "history_heads_ms_per_window": round(history_s * 1000, 1),
                "frames_per_s": round(args.window / (backbone_s + history_s), 2),
                "history_share": round(history_s / (backbone_s + history_s), 3),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
