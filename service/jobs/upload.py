"""Stream a multipart upload straight into a job's folder under a size limit; nothing is spooled anywhere else.

Starlette's own form parser spools files to the system temp dir before a route sees them, which would write
outside the job's folder and only enforce a size limit afterwards. Here the body is parsed as it arrives
(python-multipart's push parser): small text fields are kept in memory, the `file` part goes to disk, and
the upload is refused the moment it passes the limit.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from models.data.video import VIDEO_SUFFIXES
from service.jobs.inputs import BadUpload, UploadTooLarge

FILE_PART = "file"
MAX_FIELD_BYTES = 4096  # text fields (the model ref) are short; anything longer is a malformed request
MAX_FIELDS = 16
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Upload:
    """A received upload: text fields, the file written in the job's folder, its client-side name and size."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str = ""
    size: int = 0


def client_filename(raw: str) -> str:
    """The last path component of a client-sent file name, without control characters, at most 200 chars."""
    name = _UNSAFE.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:200] or "upload"


def _too_large(limit: int) -> str:
    return f"the upload is larger than the limit of {limit} bytes (VIGIL_JOBS__MAX_UPLOAD_BYTES)"


class _Receiver:
    """python-multipart callbacks: headers -> part name, data -> field buffer or the job's file."""

    def __init__(self, dest_dir: Path, max_bytes: int, before_file: Callable[[dict[str, str]], None]) -> None:
        self.dest_dir, self.max_bytes, self.before_file = dest_dir, max_bytes, before_file
        self.upload = Upload()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._part: str | None = None
        self._buffer = bytearray()
        self._file: BinaryIO | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._part, self._buffer = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise BadUpload("a multipart part has no name; send a `model` field and a `file` part")
        self._part = name
        if name != FILE_PART:
            return
        if self.upload.path is not None:
            raise BadUpload("more than one `file` part; a job scores one video")
        self.before_file(self.upload.fields)  # validate the rest before a single byte reaches the disk
        self.upload.filename = client_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
        suffix = Path(self.upload.filename).suffix.lower()
        # Keep only known video suffixes: FFmpeg picks some demuxers (e.g. tty for .txt) by extension alone.
        self.dest_dir.mkdir(parents=True, exist_ok=False)
        self.upload.path = self.dest_dir / f"input{suffix if suffix in VIDEO_SUFFIXES else ''}"
        self._file = self.upload.path.open("xb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self.upload.size += len(chunk)
            if self.upload.size > self.max_bytes:
                raise UploadTooLarge(_too_large(self.max_bytes))
            self._file.write(chunk)
            return
        self._buffer.extend(chunk)
        if len(self._buffer) > MAX_FIELD_BYTES:
            raise BadUpload(f"form field {self._part!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._part is not None:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise BadUpload(f"more than {MAX_FIELDS} form fields")
            self.upload.fields[self._part] = self._buffer.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_upload(
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
    dest_dir: Path,
    max_bytes: int,
    before_file: Callable[[dict[str, str]], None],
) -> Upload:
    """Parse a multipart/form-data body chunk by chunk; the `file` part lands in `dest_dir/input<.suffix>`.

    `dest_dir` is created when the file part begins (it must not exist yet). `before_file(fields)` runs
    first with the fields received so far and may raise to refuse the upload. Raises UploadTooLarge or
    BadUpload; on any error the caller removes `dest_dir`.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadUpload("multipart/form-data without a boundary; let the HTTP client build the body")
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes + 64 * 1024:
        raise UploadTooLarge(_too_large(max_bytes))
    receiver = _Receiver(dest_dir, max_bytes, before_file)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        raise BadUpload(f"malformed multipart body: {e}") from e
    finally:
        receiver.close()
    if receiver.upload.path is None:
        raise BadUpload(f"no `{FILE_PART}` part: send the video as a file part named `{FILE_PART}`")
    if receiver.upload.size == 0:
        raise BadUpload("the uploaded file is empty")
    return receiver.upload
