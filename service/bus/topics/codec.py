"""Serialisation shared by the topic modules: JSON documents with a checked `schema_version`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from service.errors import MessageError, SchemaVersionError
from service.messages import (
    SCHEMA_VERSION,
)

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)
Fields = Mapping[bytes, bytes]
AnyRedis = redis.Redis | redis.client.Pipeline


# --- decoding helpers ---------------------------------------------------------------------------------


def decode_json(data: bytes | str, cls: type[M], what: str) -> M:
    """Parse one JSON message; wrong schema version or invalid content -> MessageError saying which."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        msg = f"malformed {what}: not JSON ({e})"
        raise MessageError(msg) from e
    if not isinstance(raw, dict):
        msg = f"malformed {what}: expected a JSON object, got {type(raw).__name__}"
        raise MessageError(msg)
    check_version(raw.get("schema_version"), what)
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        msg = f"malformed {what}: {describe_errors(e)}"
        raise MessageError(msg) from e


def check_version(version: Any, what: str) -> None:
    if version != SCHEMA_VERSION:
        msg = (
            f"{what} has schema_version {version!r} but this process reads version {SCHEMA_VERSION}; "
            "run the same vigil version in every process"
        )
        raise SchemaVersionError(msg)


def describe_errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in e.errors())


def encode_json(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()
