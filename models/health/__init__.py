"""Camera health: cheap per-frame checks that tell broken video (decode errors, frozen, blank, covered, blurred or
moved views, colour/IR switches, sudden illumination changes) from scenes worth scoring.

`measure` reads a few numbers from a decoded frame, `monitor` turns them into per-frame flags and a camera's
conditions, `params` holds every check's settings. Pure numpy and OpenCV: the ingester, `vigil eval`/`vigil score`
and the batch jobs run the same code, so offline flags equal live ones.
"""

from models.health.measure import FrameInfo, FrameStats, frame_info, measure_av_frame, measure_bgr, measure_planes
from models.health.monitor import Change, FrameHealth, HealthMemory, HealthMonitor, ViewReference, spread
from models.health.params import BITS, CONDITIONS, CheckName, HealthParams, names_of

__all__ = [
    "BITS",
    "CONDITIONS",
    "Change",
    "CheckName",
    "FrameHealth",
    "FrameInfo",
    "FrameStats",
    "HealthMemory",
    "HealthMonitor",
    "HealthParams",
    "ViewReference",
    "frame_info",
    "measure_av_frame",
    "measure_bgr",
    "measure_planes",
    "names_of",
    "spread",
]
