"""The one footage-root policy: which local files jobs and file cameras may read. Used by the API, ingesters and jobs.

With `VIGIL_FOOTAGE_ROOT` set, a path (relative to the root, or absolute) is read only if it lies under the root
once `..` and every symlink are resolved; the resolved path is what gets opened, so a link swapped in later
cannot redirect the read. Without a root, only `VIGIL_ENV=dev` reads local files (absolute paths, anywhere).
Messages name the path as the client gave it, never the server's paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from service.errors import VigilServiceError
from service.settings import Settings


class FootageError(VigilServiceError):
    """Base of the reasons a local path is refused; the API maps each subclass to a 4xx status."""


class FootageRootMissing(FootageError):
    """Local files need `Settings.footage_root` (outside dev, or for a relative path)."""


class OutsideFootageRoot(FootageError):
    """The path (after resolving `..` and symlinks) lies outside the footage root, or is no path at all."""


class FootageNotFound(FootageError):
    """The path is allowed but names nothing."""


def is_local(url: str) -> bool:
    """A `file://` url or a plain path (what `local_path` reads), as opposed to rtsp(s):// and http(s)://."""
    return url[:7].lower() == "file://" or "://" not in url


def local_path(url: str) -> str:
    """A file camera's url -> the path it names: `file:///a/b%20c.mp4` -> `/a/b c.mp4`; a plain path stays."""
    if url[:7].lower() != "file://":
        return url
    rest = url[7:]
    rest = rest.removeprefix("localhost") if rest.startswith("localhost/") else rest
    return unquote(rest.split("?", 1)[0].split("#", 1)[0])


def confine(root: Path, given: str | Path, what: str) -> Path:
    """`given` (relative to `root`, or absolute) as a real path under `root` once `..` and every symlink are
    resolved; OutsideFootageRoot otherwise (the message says it lies outside `what`). It need not exist yet.

    The one confinement check: footage paths (below) and alert clips (service/clips/store.py) both go through it."""
    real_root = root.resolve()
    candidate = Path(given) if Path(given).is_absolute() else real_root / given
    path = candidate.resolve()  # follows every symlink, also dangling ones as far as they go
    if not path.is_relative_to(real_root):
        msg = f"path {str(given)!r} is outside {what}"
        raise OutsideFootageRoot(msg)
    return path


@dataclass(frozen=True)
class FootagePolicy:
    """`root`: Settings.footage_root; `dev`: Settings.env == "dev" (absolute paths anywhere when there is no root)."""

    root: Path | None
    dev: bool

    @classmethod
    def of(cls, settings: Settings) -> FootagePolicy:
        return cls(settings.footage_root, settings.env == "dev")

    def resolve(self, given: str) -> Path:
        """`given` -> the real path to open (it exists); raises a FootageError saying what would work."""
        if not given or "\x00" in given:
            msg = "the path must be a non-empty file name without NUL characters"
            raise OutsideFootageRoot(msg)
        if self.root is None:
            path = self._unrooted(given)
        else:
            path = confine(self.root, given, "the footage root; give a path under VIGIL_FOOTAGE_ROOT")
        if not path.exists():
            where = " under the footage root" if self.root is not None else ""
            msg = f"path {given!r} does not exist{where}"
            raise FootageNotFound(msg)
        return path

    def _unrooted(self, given: str) -> Path:
        if not self.dev:
            msg = "local files need a footage root: set VIGIL_FOOTAGE_ROOT=/path/to/footage (files under it are read)"
            raise FootageRootMissing(msg)
        if not Path(given).is_absolute():
            msg = f"path {given!r} is relative: set VIGIL_FOOTAGE_ROOT=/path/to/footage, or give an absolute path"
            raise FootageRootMissing(msg)
        return Path(given).resolve()
