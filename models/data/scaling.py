"""Decoded video frames straight to a model's input, the same way live and offline.

The live ingester and offline scoring of video files (`vigil score`, `vigil eval`, batch jobs) both decode with
PyAV and hand every decoded frame to a `FrameScaler`. For one-channel models it scales and converts in one libswscale
pass from the decoder's planes: on a 720p H.264 camera scaled to 256x256 gray the full-size route (luma range LUT
0.3 ms, OpenCV INTER_AREA resize 1.3 ms a frame) became 0.3 ms, a seventh of the decode itself
(bench/ingest_decode.py), with the pixels `models.data.transforms.prepare` made from the luma plane to within one
grey level (0.02 on average on a test pattern, 0.2 on fine texture). Colour models keep the full-size BGR frame and
`prepare`: swscale's colour area filter moved sharp colour edges by up to 141 levels against OpenCV's at 128x128.

The swscale context is kept between frames (PyAV's `VideoFrame.reformat` builds a new one for every call, which
made it slower than OpenCV).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from av.video.reformatter import VideoReformatter

from models.data.transforms import prepare
from models.types import InputSpec

_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


class FrameScaler:
    """av.VideoFrame -> uint8 (spec.height, spec.width, spec.channels), as `prepare` would make it from the frame:
    area averaging when shrinking (no aliasing), bilinear when growing, gray in full range."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self._reformatter = VideoReformatter()

    def __call__(self, frame: Any) -> np.ndarray:
        h, w = self.spec.height, self.spec.width
        if self.spec.channels != 1:
            return np.asarray(prepare(frame.to_ndarray(format="bgr24")[None], self.spec)[0])
        shrinking = h * w < frame.height * frame.width
        out = self._reformatter.reformat(
            frame,
            w,
            h,
            format="gray",
            interpolation="AREA" if shrinking else "BILINEAR",
            # a full-range frame that is not yuvj* says so only in its tag, which swscale would otherwise ignore
            src_color_range=_FULL_RANGE if frame.color_range == _FULL_RANGE else None,
            threads=1,  # one camera per thread already; swscale's own threads cost more CPU than they save here
        ).to_ndarray()
        return np.ascontiguousarray(out.reshape(h, w, 1))
