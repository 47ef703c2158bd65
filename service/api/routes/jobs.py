"""Batch re-scoring jobs: submit a video (upload, or a path under the footage root), follow it, fetch its results.

`POST /jobs` only accepts and records the job; an ingester reads it and the workers score it like a camera
(service/jobs/). Nothing is kept for a refused job: an upload is streamed into the job's own folder and the
folder is removed on any error.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.calibration.camera import card_reference
from models.errors import VigilModelError
from models.store import ModelRef, ModelStore
from service import calibration
from service.api.deps import AdminDep, RedisDep, SettingsDep, StoreDep, ViewerDep
from service.api.errors import ConflictError, InvalidRequestError, NotFoundError
from service.bus import keys, topics
from service.bus.topics.calibration import PROFILE_CODES
from service.footage import FootageError, FootageNotFound, FootagePolicy, FootageRootMissing, OutsideFootageRoot
from service.jobs.inputs import BadUpload, JobInputError, NotAVideo, UploadTooLarge, probe_video
from service.jobs.results import RESULT_FILES
from service.jobs.upload import FILE_PART, receive_upload
from service.messages import JOB_CALIBRATION_PATTERN, Alert, JobRecord, JobState
from service.settings import Settings

_CALIBRATION_DOC = (
    "the reference the job is scored on: 'card' (the model card's normal frames; every frame can alert), "
    "'learn' (the job's first VIGIL_CALIBRATION__LEARN_S seconds, alerts held back meanwhile, as a new camera), "
    "or 'camera:<id>' (that camera's learned reference, which must be of the same model version)"
)

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, PathParam(max_length=16, pattern=r"^[0-9a-f]{16}$", description="job id (16 hex digits)")]
_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}(@[a-z0-9][a-z0-9_.-]{0,63})?$"
_MAX_JSON_BYTES = 64 * 1024
_STATUS: dict[type[JobInputError | FootageError], int] = {
    FootageRootMissing: 400,
    BadUpload: 400,
    OutsideFootageRoot: 403,
    FootageNotFound: 404,
    UploadTooLarge: 413,
    NotAVideo: 415,
}


class JobFromPath(BaseModel):
    """A job on a video already on the server: `path` relative to VIGIL_FOOTAGE_ROOT (or absolute inside it)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096, examples=["ped2/test/01.mp4"])
    model: str = Field(max_length=129, pattern=_REF_PATTERN, description="model ref: name, name@v3 or name@production")
    calibration: str = Field(
        default="card", max_length=80, pattern=JOB_CALIBRATION_PATTERN, description=_CALIBRATION_DOC
    )


class JobOut(BaseModel):
    """A job as the API shows it. `frames_scored` counts up while it runs; results are links once it is done."""

    id: str
    state: JobState
    reason: str
    model: str
    source: str
    name: str
    created_ts: float
    started_ts: float | None
    finished_ts: float | None
    frames_total: int | None
    frames_scored: int
    context: int  # the first `context` frames get no score, as in `vigil score`
    progress: float  # frames_scored / (frames_total - context), in [0, 1]
    alerts: int
    calibration: str  # the reference it is scored on: card | learn | camera:<id>
    results: dict[str, str]  # kind -> URL path, once done


_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [FILE_PART],
    "properties": {
        "model": {"type": "string", "description": "model ref; send it before the file part (or as ?model=)"},
        FILE_PART: {"type": "string", "format": "binary", "description": "the video (mp4, avi, mkv, mov)"},
    },
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            "application/json": {"schema": JobFromPath.model_json_schema()},
        },
    }
}


def _calibrate_job(redis: RedisDep, store: ModelStore, job: JobRecord, settings: Settings) -> None:
    """Give the job's stream (a camera to the workers) the reference `job.calibration` names, before any window."""
    stream = keys.job_stream(job.id)
    if job.calibration == "learn":
        return  # a new camera: it learns from its first calibration.learn_s seconds, alerts held back meanwhile
    if job.calibration == "card":
        card = store.resolve(job.model).card().calibration
        assert card is not None  # _resolve_model refuses models without one
        ref = card_reference(card, settings.calibration)
        calibration.install(redis, stream, job.model, dict.fromkeys(PROFILE_CODES, ref))
        return
    camera = job.calibration.removeprefix("camera:")
    stored = topics.load_reference(redis, camera)
    if stored is None or stored.model != job.model:
        msg = (
            f"calibration {job.calibration!r}: camera {camera!r} has no learned reference of {job.model}; "
            "use 'card', 'learn', or a camera that runs this model and has learned"
        )
        raise InvalidRequestError(msg)
    calibration.install(redis, stream, job.model, dict(stored.profiles))


@router.post("", status_code=201, response_model=JobOut, openapi_extra=_OPENAPI_BODY)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    redis: RedisDep,
    _: AdminDep,
    model: Annotated[str | None, Query(max_length=129, pattern=_REF_PATTERN, description="model ref (uploads)")] = None,
    calibration: Annotated[
        str, Query(max_length=80, pattern=JOB_CALIBRATION_PATTERN, description=f"uploads: {_CALIBRATION_DOC}")
    ] = "card",
) -> JobOut:
    """Queue a job: a multipart upload (`model` field, then `file`) or JSON `{"path", "model"}`."""
    content_type = request.headers.get("content-type", "")
    job_id = uuid.uuid4().hex[:16]
    folder = settings.jobs.dir.resolve() / job_id
    try:
        if content_type.startswith("multipart/form-data"):
            job = await _from_upload(
                request, content_type, job_id, folder, settings.jobs.max_upload_bytes, store, model
            )
            job = job.model_copy(update={"calibration": calibration})
        elif content_type.startswith("application/json"):
            job = await _from_path(request, job_id, FootagePolicy.of(settings), store)
            folder.mkdir(parents=True)  # where its results will go
        else:
            msg = "send multipart/form-data (a `model` field and a `file` part) or application/json {path, model}"
            raise HTTPException(415, msg)
        await run_in_threadpool(_calibrate_job, redis, store, job, settings)
        await run_in_threadpool(topics.put_job, redis, job)
        await run_in_threadpool(topics.announce_job, redis, job.id)
    except BaseException as e:
        shutil.rmtree(folder, ignore_errors=True)  # a refused job leaves nothing behind
        if isinstance(e, JobInputError | FootageError):
            raise HTTPException(_STATUS[type(e)], str(e)) from e
        raise
    response.headers["Location"] = f"/jobs/{job_id}"
    return _out(job, job.frames_scored)


async def _from_upload(
    request: Request, content_type: str, job_id: str, folder: Path, limit: int, store: ModelStore, model: str | None
) -> JobRecord:
    resolved: list[tuple[str, int]] = []

    def before_file(fields: dict[str, str]) -> None:
        ref = model or fields.get("model")
        if not ref:
            msg = "no model: send a `model` form field before the `file` part, or ?model=name@version"
            raise InvalidRequestError(msg)
        resolved.append(_resolve_model(store, ref))

    upload = await receive_upload(
        content_type, request.headers.get("content-length"), request.stream(), folder, limit, before_file
    )
    assert upload.path is not None  # receive_upload raises when there was no file part
    assert resolved  # before_file ran when the file part began
    probe = await run_in_threadpool(probe_video, upload.path, upload.filename)
    ref, context = resolved[0]
    return JobRecord(
        id=job_id,
        model=ref,
        source="upload",
        name=upload.filename,
        input=str(upload.path),
        frames_total=probe.frames,
        context=context,
    )


async def _from_path(request: Request, job_id: str, footage: FootagePolicy, store: ModelStore) -> JobRecord:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_JSON_BYTES:
            raise HTTPException(413, f"a JSON job request is at most {_MAX_JSON_BYTES} bytes")
    try:
        spec = JobFromPath.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from e
    path = footage.resolve(spec.path)
    ref, context = _resolve_model(store, spec.model)
    probe = await run_in_threadpool(probe_video, path, spec.path)
    return JobRecord(
        id=job_id,
        model=ref,
        source="path",
        name=spec.path,
        input=str(path),
        frames_total=probe.frames,
        context=context,
        calibration=spec.calibration,
    )


def _resolve_model(store: ModelStore, ref: str) -> tuple[str, int]:
    """A ref -> (name@version it resolves to now, its context). Unknown -> 404 naming the models that exist."""
    try:
        version = store.resolve(ModelRef.parse(ref))
        card = version.card()
    except ValueError as e:  # a malformed ref
        raise InvalidRequestError(str(e)) from e
    except VigilModelError:
        raise  # ModelNotFoundError -> 404 (service/api/errors.py), with the models that exist
    if card.calibration is None:
        msg = (
            f"{version.ref} has no calibration in its card; jobs return calibrated scores: calibrate it or pick another"
        )
        raise InvalidRequestError(msg)
    return version.ref, int(card.input_spec.get("context", 0))


def _out(job: JobRecord, frames_scored: int) -> JobOut:
    scorable = max((job.frames_total or 0) - job.context, 0)
    results = {}
    if job.state == "done":
        results = {kind: f"/jobs/{job.id}/{name}" for kind, name in RESULT_FILES.items() if kind != "alerts"}
        results["alerts"] = f"/jobs/{job.id}/alerts"
    return JobOut(
        **job.model_dump(include=set(JobOut.model_fields) - {"frames_scored", "progress", "results"}),
        frames_scored=frames_scored,
        progress=1.0 if job.state == "done" else min(frames_scored / scorable, 1.0) if scorable else 0.0,
        results=results,
    )


def _load(redis: RedisDep, job_id: str) -> JobRecord:
    job = topics.get_job(redis, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r}; list jobs with GET /jobs")
    return job


def _live_scored(redis: RedisDep, job: JobRecord) -> int:
    return (
        job.frames_scored
        if job.state in ("done", "failed")
        else int(redis.xlen(keys.score_stream_key(keys.job_stream(job.id))))
    )


@router.get("", response_model=list[JobOut])
def list_jobs(
    redis: RedisDep,
    _: ViewerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[JobOut]:
    """Jobs, newest first."""
    return [_out(job, _live_scored(redis, job)) for job in topics.list_jobs(redis, limit, offset)]


@router.get("/{job_id}", response_model=JobOut)
def show_job(job_id: JobId, redis: RedisDep, _: ViewerDep) -> JobOut:
    job = _load(redis, job_id)
    return _out(job, _live_scored(redis, job))


def _result_file(settings: SettingsDep, redis: RedisDep, job_id: str, kind: str) -> Path:
    job = _load(redis, job_id)
    if job.state != "done":
        why = f"it failed: {job.reason}" if job.state == "failed" else f"it is {job.state}; poll GET /jobs/{job_id}"
        raise ConflictError(f"job {job_id} has no results: {why}")
    path = settings.jobs.dir.resolve() / job_id / RESULT_FILES[kind]
    if not path.is_file():
        raise NotFoundError(f"job {job_id} is done but its {RESULT_FILES[kind]} is missing from the job's folder")
    return path


@router.get("/{job_id}/result.csv", response_class=FileResponse)
def result_csv(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: ViewerDep) -> FileResponse:
    """frame, pts, score, raw signals: the columns of `vigil score`."""
    path = _result_file(settings, redis, job_id, "csv")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}.csv")


@router.get("/{job_id}/result.json", response_class=FileResponse)
def result_json(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: ViewerDep) -> FileResponse:
    """The JSON document of `vigil score`: video, model, fps, context, signal_names, per-frame records."""
    return FileResponse(_result_file(settings, redis, job_id, "json"), media_type="application/json")


@router.get("/{job_id}/timeline.png", response_class=FileResponse)
def timeline_png(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: ViewerDep) -> FileResponse:
    return FileResponse(_result_file(settings, redis, job_id, "png"), media_type="image/png")


@router.get("/{job_id}/alerts", response_model=list[Alert])
def job_alerts(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: ViewerDep) -> list[Alert]:
    """The alerts found: final once the job is done, the ones so far while it runs."""
    job = _load(redis, job_id)
    if job.state == "done":
        data = json.loads(_result_file(settings, redis, job_id, "alerts").read_text())
        return [Alert.model_validate(a) for a in data]
    return topics.list_alerts(redis, limit=1000, camera=keys.job_stream(job_id)).alerts


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: AdminDep) -> JobOut:
    """Stop a queued or running job: its ingester stops reading within a tick and the record stays `cancelled`.
    Windows already on the bus are still scored; its score stream expires. DELETE it afterwards to free its files."""
    job, cancelled = topics.cancel_job(redis, job_id, reason="cancelled through the API")
    if job is None:
        raise NotFoundError(f"no job {job_id!r}; list jobs with GET /jobs")
    if not cancelled:
        raise ConflictError(
            f"job {job_id} is already {job.state}; nothing to cancel (DELETE /jobs/{job_id} removes it)"
        )
    topics.expire_job_stream(redis, job_id, settings.alerts.retention_s, drop_scores=False)
    return _out(job, _live_scored(redis, job))


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: JobId, settings: SettingsDep, redis: RedisDep, _: AdminDep) -> Response:
    """Remove an ended (done, failed or cancelled) job: its record and its folder (upload and results)."""
    job = _load(redis, job_id)
    if job.state in topics.ACTIVE_STATES:
        raise ConflictError(f"job {job_id} is {job.state}; cancel it first (POST /jobs/{job_id}/cancel)")
    topics.delete_job(redis, job_id)
    shutil.rmtree(settings.jobs.dir.resolve() / job_id, ignore_errors=True)
    return Response(status_code=204)
