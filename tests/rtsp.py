"""A real RTSP server for tests: GStreamer's gst-rtsp-server serves a clip over RTSP (TCP and UDP), optional basic auth.

ffmpeg cannot serve RTSP to pull clients (`-rtsp_flags listen` only receives a publisher), so the server is
gst-rtsp-server run by the system python3 with PyGObject (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-good/bad; `scripts/install-system-deps.sh` installs them). Import the fixture into a
conftest with `from tests.rtsp import rtsp_server, rtsp_server_factory  # noqa: F401`.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # the Debian python that has PyGObject; the venv's python does not

# Runs inside the system python. argv: port, clip, mount path, user, password ("" = no auth).
_SERVER_SCRIPT = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, clip, mount, user, password = sys.argv[1:6]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
if user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", user)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    role = Gst.Structure.from_string(
        f"{user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    )[0]
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(role)
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/" + mount, factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
"""


def _check_gstreamer() -> None:
    probe = 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer'
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode:
        pytest.fail("gst-rtsp-server is not installed: run `bash scripts/install-system-deps.sh` (Debian packages)")


def loop_clip(clip: Path, out: Path, duration_s: float) -> Path:
    """`clip` repeated until it lasts at least `duration_s`, re-encoded near-losslessly (H.264, crf 10).

    Re-encoding (rather than stream copy) keeps timestamps strictly increasing across the seams and puts a
    keyframe every second, so a client that connects mid-stream gets a picture within a second.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(clip)],
        capture_output=True,
        text=True,
        check=True,
    )
    loops = max(0, int(duration_s / max(float(probe.stdout.strip()), 0.04)))
    cmd = [ffmpeg, "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(clip), "-an", "-c:v", "libx264"]
    cmd += ["-preset", "ultrafast", "-crf", "10", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True)
    return out


class RtspServer:
    """One gst-rtsp-server process serving `clip` at rtsp://127.0.0.1:PORT/MOUNT; stop() and start() keep the port."""

    def __init__(
        self, clip: Path, port: int, mount: str = "cam", user: str | None = None, password: str | None = None
    ) -> None:
        self.clip, self.port, self.mount = clip, port, mount
        self.user, self.password = user, password
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The stream URL; credentials default to the server's own (pass others to test a refusal)."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        cred = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/{self.mount}"

    def start(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None:
            return
        args = [str(self.port), str(self.clip), self.mount, self.user or "", self.password or ""]
        self.proc = subprocess.Popen([SYSTEM_PYTHON, "-c", _SERVER_SCRIPT, *args], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        # The port may still be in TIME_WAIT after a restart; the script exits if it cannot bind.
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            pytest.fail(f"RTSP server on port {self.port} did not start (exit {self.proc and self.proc.poll()})")
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"RTSP server on port {self.port} did not accept connections within {timeout_s} s")

    def stop(self) -> None:
        """Kill the server abruptly (as a crash would): clients see the connection drop."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused process would not die until continued
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but no data flows, as with a hung camera."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def rtsp_server_factory(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Factory `make(clip, user=None, password=None, duration_s=120)` -> a started RtspServer on a free port.

    The clip is looped (stream copy) to `duration_s` so the stream lasts the whole test; every server
    is killed at teardown.
    """
    _check_gstreamer()
    servers: list[RtspServer] = []

    def make(clip: Path, user: str | None = None, password: str | None = None, duration_s: float = 120) -> RtspServer:
        long_clip = loop_clip(clip, tmp_path / f"loop{len(servers)}.mp4", duration_s)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = RtspServer(long_clip, port, user=user, password=password)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(rtsp_server_factory: Callable[..., RtspServer], synthetic_video: tuple[Path, Any]) -> RtspServer:
    """The `synthetic_video` clip (anomalous frames ANOMALY_SPAN of every 64) looped for 120 s, no auth.

    `rtsp_server.url()` is the stream; `stop()`/`start()` kill and restart it on the same port.
    """
    return rtsp_server_factory(synthetic_video[0])
