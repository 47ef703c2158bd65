"""Alert heatmaps: where in the frame the model saw the anomaly (issue 11, item 2).

`store`: the coarse per-frame maps the worker keeps for live cameras and copies to each alert (`alert_maps`);
`overlay`: blending a map over a frame, `overlay_for_alert` for every frame of an alert's clip, and the peak frame's
picture `GET /alerts/{id}/heatmap.jpg` serves.
"""

from service.heatmaps.overlay import blend, heatmap_jpeg, overlay_for_alert
from service.heatmaps.store import FrameMap, alert_maps, decode_map, encode_map, keep_alert_maps, put_frame_maps

__all__ = [
    "FrameMap",
    "alert_maps",
    "blend",
    "decode_map",
    "encode_map",
    "heatmap_jpeg",
    "keep_alert_maps",
    "overlay_for_alert",
    "put_frame_maps",
]
