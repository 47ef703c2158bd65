"""Alert clips' records: which alerts have a clip, partial or final (the files are in `clips.dir`)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from service.alerts.links import clip_path
from service.bus import keys
from service.bus.topics.codec import decode_json, encode_json
from service.messages import Alert, AlertClip


def put_alert_clip(r: redis.Redis, clip: AlertClip, retention_s: int) -> None:
    r.set(keys.alert_clip_key(clip.alert), encode_json(clip), ex=retention_s)


def get_alert_clips(r: redis.Redis, alert_ids: Sequence[str]) -> dict[str, AlertClip]:
    """The clip records of those alerts that have one (one MGET)."""
    if not alert_ids:
        return {}
    docs = r.mget([keys.alert_clip_key(a) for a in alert_ids])
    return {a: decode_json(d, AlertClip, "alert clip") for a, d in zip(alert_ids, docs, strict=True) if d is not None}


def delete_alert_clips(r: redis.Redis, alert_ids: Sequence[str]) -> None:
    if alert_ids:
        r.delete(*(keys.alert_clip_key(a) for a in alert_ids))


def with_clip_paths(r: redis.Redis, alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts with `clip` set to their clip's path where one has been written (one MGET for all)."""
    clips = get_alert_clips(r, list(dict.fromkeys(a.id for a in alerts)))
    return [a.model_copy(update={"clip": clip_path(a.id)}) if a.id in clips else a for a in alerts]
