"""Errors of the `service` package: bus, messages, worker. Domain errors only; the API maps them to HTTP codes."""

from __future__ import annotations


class VigilServiceError(Exception):
    """Base class for every error raised by `service`."""


class BusError(VigilServiceError):
    """Redis could not be reached or answered in a way the bus does not expect."""


class MessageError(VigilServiceError, ValueError):
    """A message on the bus that cannot be decoded: malformed, or written with another schema version."""


class SchemaVersionError(MessageError):
    """A message written by a producer with a different wire schema version (mixed deployments)."""


class ModelUnavailableError(VigilServiceError):
    """A model reference the worker cannot serve: unknown, corrupt, or without a calibration."""


class SourceError(VigilServiceError):
    """A video source failed (ingester); `SourceConnectionError` and friends derive from it."""


class SourceConnectionError(SourceError):
    """A source could not be opened or dropped its connection (bad URL, credentials, network)."""


class EndOfStream(SourceError):
    """A finite source (file, job) has no more frames."""
