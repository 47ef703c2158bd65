"""Cameras CRUD and status. URLs are stored with their credentials but only ever returned masked."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.health.params import CheckName, HealthOverrides, HealthParams
from models.store import ModelStore
from service.api.deps import AdminDep, RedisDep, SettingsDep, StoreDep, ViewerDep
from service.api.errors import ConflictError, InvalidRequestError, NotFoundError
from service.bus import keys, topics
from service.footage import FootageError, FootagePolicy, is_local, local_path
from service.messages import (
    CAMERA_URL_MAX_LENGTH,
    AlertOverrides,
    CameraConfig,
    CameraHealth,
    CameraKind,
    CameraStatus,
    StreamState,
)
from service.settings import Settings

router = APIRouter(prefix="/cameras", tags=["cameras"])

CAMERA_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CAMERA_ID_MAX = 64  # every string the API takes has a max_length, checked before any pattern
MODEL_REF_MAX = 129  # name@selector, 64 characters each
CameraId = Annotated[str, PathParam(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN, description="camera id")]


class CameraCreate(BaseModel):
    """A new camera. `url`: rtsp(s)://, http(s)://, file:// or an absolute path under VIGIL_FOOTAGE_ROOT."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: str = Field(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN, examples=["entrance"])
    url: str = Field(max_length=CAMERA_URL_MAX_LENGTH, examples=["rtsp://user:password@10.0.0.5:554/stream1"])
    model: str = Field(
        max_length=MODEL_REF_MAX, description="model ref: name, name@v3 or name@production", examples=["ffp"]
    )
    enabled: bool = True
    kind: CameraKind = "live"
    target_fps: float | None = Field(default=None, gt=0, le=240)
    realtime: bool = True
    alerts: AlertOverrides = AlertOverrides()
    # per-check health settings over VIGIL_HEALTH__* (GET /cameras/{id}/health shows the effective ones)
    health: HealthOverrides = HealthOverrides()

    @field_validator("id")
    @classmethod
    def _not_a_job(cls, v: str) -> str:
        if v.startswith(keys.JOB_STREAM_PREFIX):
            msg = (
                f"camera ids starting with {keys.JOB_STREAM_PREFIX!r} are reserved for batch jobs (their scores and "
                "alerts travel under job-<job id>); pick another id"
            )
            raise ValueError(msg)
        return v


class CameraPatch(BaseModel):
    """Fields to change; absent fields keep their value. `alerts` and `health` merge key by key (JSON merge patch): a
    key left out keeps its override, a key set to null drops it (back to the service default); `health` merges each
    check the same way: `{"frozen": {"min_s": 3}}` changes one field, `{"frozen": null}` drops the check's overrides."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    url: str | None = Field(default=None, max_length=CAMERA_URL_MAX_LENGTH)
    model: str | None = Field(default=None, max_length=MODEL_REF_MAX)
    enabled: bool | None = None
    kind: CameraKind | None = None
    target_fps: float | None = Field(default=None, gt=0, le=240)
    realtime: bool | None = None
    alerts: AlertOverrides | None = None
    health: HealthOverrides | None = None


class CameraOut(BaseModel):
    """A camera as the API shows it: the URL's password is masked (`rtsp://user:***@host/...`)."""

    id: str
    url: str
    model: str
    enabled: bool
    kind: CameraKind
    target_fps: float | None
    realtime: bool
    alerts: AlertOverrides
    health: HealthOverrides
    state: StreamState | Literal["pending"]  # pending: no ingester has reported on it yet
    conditions: list[CheckName] = []  # camera health conditions raised now (GET /cameras/{id}/health); [] = ok


class CameraHealthOut(CameraHealth):
    """A camera's health (ok, or the raised conditions with since-when) and the check settings it runs with."""

    params: HealthParams  # VIGIL_HEALTH__* with the camera's `health` overrides merged over them


def _validated(data: dict[str, Any], settings: Settings, store: ModelStore) -> CameraConfig:
    """Build the stored config (422 naming the field), then check the model and any local file."""
    try:
        camera = CameraConfig.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from e
    store.resolve(camera.model)  # ModelNotFoundError -> 404 naming the models that exist
    if is_local(camera.url):
        given = local_path(camera.url)
        try:
            path = FootagePolicy.of(settings).resolve(given)
        except FootageError as e:
            raise InvalidRequestError(f"url: {e}") from e
        if not path.is_file():
            msg = f"url: {given!r} is not a file; give a video file (a folder of frames is for jobs only)"
            raise InvalidRequestError(msg)
    return camera


def _out(camera: CameraConfig, status: CameraStatus | None, health: CameraHealth | None = None) -> CameraOut:
    conditions = list(health.conditions) if health is not None else []
    state = status.state if status else "pending"
    return CameraOut.model_validate({**camera.public(), "state": state, "conditions": conditions})


def _merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) of override objects: null drops a key, an object merges into the current one."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out[key] = None
        elif isinstance(value, dict):
            out[key] = _merge_patch(out.get(key) or {}, value)
        else:
            out[key] = value
    return out


def existing_camera(redis: RedisDep, camera_id: str) -> CameraConfig:
    camera = topics.get_camera(redis, camera_id)
    if camera is None:
        known = ", ".join(c.id for c in topics.list_cameras(redis)) or "none"
        msg = f"no camera {camera_id!r}; cameras: {known}"
        raise NotFoundError(msg)
    return camera


# OpenAPI links: what a client (and the stateful fuzz test) can do next with the camera it created.
_CAMERA_LINKS = {
    name: {
        "operationRef": f"#/paths/~1cameras~1{{camera_id}}{suffix}/{method}",
        "parameters": {"camera_id": "$response.body#/id"},
    }
    for name, suffix, method in (
        ("ShowCamera", "", "get"),
        ("UpdateCamera", "", "patch"),
        ("DeleteCamera", "", "delete"),
        ("CameraStatus", "~1status", "get"),
    )
}


@router.post("", response_model=CameraOut, status_code=201, responses={201: {"links": _CAMERA_LINKS}})
def create_camera(
    body: CameraCreate, redis: RedisDep, store: StoreDep, settings: SettingsDep, _: AdminDep
) -> CameraOut:
    camera = _validated(body.model_dump(), settings, store)
    if topics.get_camera(redis, camera.id) is not None:
        msg = f"camera {camera.id!r} exists; PATCH /cameras/{camera.id} changes it"
        raise ConflictError(msg)
    topics.put_camera(redis, camera)
    return _out(camera, None)


@router.get("", response_model=list[CameraOut])
def list_cameras(redis: RedisDep, _: ViewerDep) -> list[CameraOut]:
    statuses = topics.list_camera_statuses(redis)
    health = topics.list_camera_health(redis)
    return [_out(c, statuses.get(c.id), health.get(c.id)) for c in topics.list_cameras(redis)]


@router.get("/{camera_id}", response_model=CameraOut)
def show_camera(camera_id: CameraId, redis: RedisDep, _: ViewerDep) -> CameraOut:
    camera = existing_camera(redis, camera_id)
    return _out(camera, topics.get_camera_status(redis, camera_id), topics.get_camera_health(redis, camera_id))


@router.patch("/{camera_id}", response_model=CameraOut)
def update_camera(
    camera_id: CameraId, body: CameraPatch, redis: RedisDep, store: StoreDep, settings: SettingsDep, _: AdminDep
) -> CameraOut:
    current = existing_camera(redis, camera_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"alerts", "health"})
    if body.alerts is not None:
        changes["alerts"] = {**current.alerts.model_dump(), **body.alerts.model_dump(exclude_unset=True)}
    if body.health is not None:
        changes["health"] = _merge_patch(current.health.model_dump(), body.health.model_dump(exclude_unset=True))
    data = {**current.model_dump(), **changes}
    camera = _validated(data, settings, store)
    topics.put_camera(redis, camera)
    return _out(camera, topics.get_camera_status(redis, camera_id))


@router.delete("/{camera_id}", status_code=204, response_class=Response)
def delete_camera(camera_id: CameraId, redis: RedisDep, _: AdminDep) -> Response:
    if not topics.delete_camera(redis, camera_id):
        existing_camera(redis, camera_id)  # raises the 404 that lists the cameras
    return Response(status_code=204)


@router.get("/{camera_id}/health", response_model=CameraHealthOut)
def camera_health(camera_id: CameraId, redis: RedisDep, settings: SettingsDep, _: ViewerDep) -> CameraHealthOut:
    """The camera's health as its ingester last wrote it (`ok` until a check raises a condition)."""
    camera = existing_camera(redis, camera_id)
    health = topics.get_camera_health(redis, camera_id) or CameraHealth(camera=camera_id)
    params = HealthParams.merge(settings.health, camera.health.model_dump(exclude_none=True))
    return CameraHealthOut.model_validate({**health.model_dump(), "params": params.model_dump()})


@router.get("/{camera_id}/status", response_model=CameraStatus)
def camera_status(camera_id: CameraId, redis: RedisDep, _: ViewerDep) -> CameraStatus:
    existing_camera(redis, camera_id)
    status = topics.get_camera_status(redis, camera_id)
    if status is None:  # added but not yet picked up: say so instead of 404
        return CameraStatus(camera=camera_id, state="connecting", reason="waiting for an ingester to take the camera")
    return status
