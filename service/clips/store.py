"""Where clips live: `<clips.dir>/<camera>/<alert id>.mp4`, confined to the folder, and the sweep that applies the
retention (age) and the size cap (oldest first)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from service import metrics
from service.footage import confine

log = logging.getLogger(__name__)

SUFFIX = ".mp4"
_STALE_TMP_S = 3600.0  # a temporary file this old was left by a writer that died


@dataclass
class SweepResult:
    removed: dict[str, list[str]] = field(default_factory=dict)  # reason (retention|size_cap) -> alert ids
    bytes: int = 0  # what is left


class ClipStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, camera: str, alert_id: str) -> Path:
        """The clip's file (it need not exist); OutsideFootageRoot for names that would leave the folder."""
        return confine(self.root, Path(camera) / f"{alert_id}{SUFFIX}", "clips.dir")

    def existing(self, camera: str, alert_id: str) -> Path | None:
        path = self.path(camera, alert_id)
        return path if path.is_file() else None

    def sweep(self, retention_s: float, max_bytes: int, now: float | None = None) -> SweepResult:
        """Delete clips older than `retention_s` (by their last write), then the oldest until at most `max_bytes`
        are left. Several ingesters may sweep the same folder: a file another one deleted first is skipped."""
        now = time.time() if now is None else now
        clips: list[tuple[float, int, Path]] = []
        for path in self.root.glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if path.name.startswith("."):
                if path.name.endswith(".tmp") and now - st.st_mtime > _STALE_TMP_S:
                    path.unlink(missing_ok=True)
            elif path.suffix == SUFFIX:
                clips.append((st.st_mtime, st.st_size, path))
        clips.sort()
        result = SweepResult()
        total = sum(size for _, size, _ in clips)
        for mtime, size, path in clips:
            if now - mtime > retention_s:
                reason = "retention"
            elif total > max_bytes:
                reason = "size_cap"
            else:
                continue
            path.unlink(missing_ok=True)
            total -= size
            result.removed.setdefault(reason, []).append(path.stem)
            metrics.CLIPS_REMOVED.labels(reason).inc()
        result.bytes = total
        metrics.CLIPS_BYTES.set(total)
        if result.removed:
            log.info("clips: removed %s; %.1f MiB left", {k: len(v) for k, v in result.removed.items()}, total / 2**20)
        return result
