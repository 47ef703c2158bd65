"""Model registry over HTTP: list, show and promote versions. Metadata only, through `models.store`, never torch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from models.card import ModelCard
from models.store import DEFAULT_ALIAS, ModelRef
from service.api.deps import AdminDep, StoreDep, ViewerDep
from service.api.errors import InvalidRequestError

router = APIRouter(prefix="/models", tags=["models"])

_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}(@[a-z0-9][a-z0-9_.-]{0,63})?$"
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ModelSummary(BaseModel):
    name: str
    versions: list[str]
    aliases: dict[str, str]
    resolves_to: str | None  # the version a bare `name` reference loads


class ModelDetail(BaseModel):
    ref: str  # name@version the reference resolved to
    aliases: dict[str, str]
    card: ModelCard


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(
        max_length=129, pattern=_REF_PATTERN, description="version or alias to promote, e.g. 'v3'", examples=["v1"]
    )
    alias: str = Field(default=DEFAULT_ALIAS, max_length=64, pattern=_NAME_PATTERN, description="alias to point at it")


@router.get("", response_model=list[ModelSummary])
def list_models(store: StoreDep, _: ViewerDep) -> list[ModelSummary]:
    out = []
    for name in store.names():
        versions = [v.version for v in store.versions(name)]
        if not versions:
            continue  # a folder with no complete version (e.g. training in progress) is not a model yet
        out.append(
            ModelSummary(
                name=name, versions=versions, aliases=store.aliases(name), resolves_to=store.resolve(name).version
            )
        )
    return out


@router.get("/{ref}", response_model=ModelDetail)
def show_model(
    ref: Annotated[str, Path(max_length=129, pattern=_REF_PATTERN)], store: StoreDep, _: ViewerDep
) -> ModelDetail:
    version = store.resolve(ref)
    return ModelDetail(ref=version.ref, aliases=store.aliases(version.name), card=version.card())


@router.post("/{name}/promote", response_model=ModelDetail)
def promote_model(
    name: Annotated[str, Path(max_length=64, pattern=_NAME_PATTERN)], body: PromoteRequest, store: StoreDep, _: AdminDep
) -> ModelDetail:
    """Point an alias (default `production`) at a version; workers following the alias reload."""
    target = ModelRef.parse(body.version)
    if target.selector is not None and target.name != name:
        msg = f"promote {body.version!r} under model {name!r}: give a version of {name!r} such as 'v1'"
        raise InvalidRequestError(msg)
    ref = f"{name}@{target.selector or target.name}"
    try:
        version = store.promote(ref, body.alias)
    except ValueError as e:  # e.g. an alias that looks like a version
        raise InvalidRequestError(str(e)) from e
    return ModelDetail(ref=version.ref, aliases=store.aliases(name), card=version.card())
