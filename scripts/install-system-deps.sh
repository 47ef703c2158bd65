#!/usr/bin/env bash
# Installs the Debian packages vigil's demo and tests use (ffmpeg, redis-server), only those missing.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v redis-server >/dev/null || need+=(redis-server)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
# tests/rtsp.py: a real RTSP server (gst-rtsp-server driven by the system python3 through PyGObject)
/usr/bin/python3 -c 'import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst; Gst.init(None)
assert all(Gst.ElementFactory.find(e) for e in ("qtdemux", "h264parse", "rtph264pay"))' 2>/dev/null \
  || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra"); done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
