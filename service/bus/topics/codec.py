"""Serialisation shared by the topic modules: JSON documents with a checked `schema_version`."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import redis
from pydantic import BaseModel, ValidationError
from redis.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot

from service.errors import MessageError, SchemaVersionError
from service.messages import (
    SCHEMA_VERSION,
)

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)
Fields = Mapping[bytes, bytes]
AnyRedis = redis.Redis | redis.client.Pipeline
Arg = bytes | str | int | float


SLOT_BLOCK_MS = 20  # longest block on one slot's streams when an XREAD spans several cluster slots


def xread_streams(r: redis.Redis, streams: Mapping[str, str], count: int, block_ms: int | None) -> list[Any]:
    """XREAD of several streams, optionally blocking, also when a cluster holds them in different slots (one command
    cannot read those): there it reads each slot's streams without waiting ("$" taken as the stream's last id now)
    and, when none has anything, blocks on one slot for at most `SLOT_BLOCK_MS`. Same reply shape as XREAD."""
    if not isinstance(r, RedisCluster):
        return cast(list[Any], r.xread(dict[Any, Any](streams), count=count, block=block_ms) or [])
    by_slot: dict[int, dict[str, str]] = {}
    for key, last_id in streams.items():
        by_slot.setdefault(key_slot(key.encode()), {})[key] = last_id
    if len(by_slot) <= 1:
        return _xread_cluster(r, streams, count, block_ms) if streams else []
    out: list[Any] = []
    groups = [{k: _concrete(r, k, i) for k, i in g.items()} for g in by_slot.values()]
    for group in groups:
        out.extend(_xread_cluster(r, group, count, None))
    if out or block_ms is None:
        return out
    return _xread_cluster(r, random.choice(groups), count, min(block_ms, SLOT_BLOCK_MS))


def xreadgroup_one(
    client: AnyRedis, group: str, consumer: str, stream: str, last_id: str, count: int, block_ms: int | None = None
) -> Any:
    """XREADGROUP of one stream (or queue it, in a pipeline). On a cluster the command names its node: redis-py finds
    the keys of XREADGROUP and XREAD (they follow a STREAMS keyword, which its key parser does not read) by asking a
    node COMMAND GETKEYS before every call, which doubled the commands a cluster served (bench/redis_cost.py
    --cluster). Same reply as `xreadgroup`."""
    if not isinstance(client, RedisCluster | ClusterPipeline):
        return client.xreadgroup(group, consumer, {stream: last_id}, count=count, block=block_ms)
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    args += [] if block_ms is None else ["BLOCK", block_ms]
    return client.execute_command(*args, "STREAMS", stream, last_id, target_nodes=_node_of(client, stream))


def _xread_cluster(r: RedisCluster, streams: Mapping[str, str], count: int, block_ms: int | None) -> list[Any]:
    """XREAD of streams in one slot, sent to its node directly (see `xreadgroup_one`)."""
    args: list[Any] = ["XREAD", "COUNT", count] + ([] if block_ms is None else ["BLOCK", block_ms])
    node = _node_of(r, next(iter(streams)))
    reply = r.execute_command(*args, "STREAMS", *streams.keys(), *streams.values(), target_nodes=node)  # type: ignore[no-untyped-call]
    return cast(list[Any], reply or [])


def _node_of(client: RedisCluster | ClusterPipeline, key: str) -> Any:
    """The cluster node serving `key`'s slot, named on stream reads whose keys redis-py cannot find itself."""
    return client.nodes_manager.get_node_from_slot(key_slot(key.encode()))


def _concrete(r: redis.Redis, stream: str, last_id: str) -> str:
    """A stream id for `last_id`, with "$" replaced by the stream's last id now (0-0 for a stream not yet there)."""
    if last_id != "$":
        return last_id
    try:
        info: Any = r.xinfo_stream(stream)
    except redis.ResponseError:  # no such key
        return "0-0"
    return text_of(info["last-generated-id"])


def text_of(value: bytes | str) -> str:
    """A reply field as text: redis-py gives bytes or str depending on the command and the client's decoding."""
    return value.decode() if isinstance(value, bytes) else value


def is_pipeline(client: AnyRedis) -> bool:
    """Whether `client` queues commands (a pipeline, standalone or cluster) rather than sending them."""
    return isinstance(client, redis.client.Pipeline | ClusterPipeline)


def run_script(client: AnyRedis, script: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run a Lua script on a client or queue it in a pipeline. In a cluster pipeline it goes as EVAL with the script's
    text: redis-py queues EVALSHA there without loading the script on the node first, and inside MULTI a NOSCRIPT
    fails that one command while the rest of the transaction is applied. Elsewhere redis-py's Script sends EVALSHA
    and loads the script when a server does not know it (a pipeline loads it before it executes)."""
    if isinstance(client, ClusterPipeline):
        return client.execute_command("EVAL", script, len(keys), *keys, *args)
    return client.register_script(script)(keys=keys, args=args, client=client)


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
