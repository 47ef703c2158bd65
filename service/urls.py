"""Camera URLs: the one masking function for anything shown or logged, and the check a camera URL must pass.

Both parse instead of scanning with a pattern, so their cost is linear in the text. Masking is conservative:
everything before the last `@` of a URL is credentials (the `user:` prefix stays when it is plain), and the
value of every query parameter whose name means a secret (password, pwd, token, key, auth, signature, ...)
is hidden. `check_camera_url` refuses what masking could not read unambiguously (an `@` or `/` inside the
userinfo), so every stored URL masks exactly.
"""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import unquote

MASK = "***"
URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
_WHITESPACE = re.compile(r"\s")
_PARAM_SEPARATORS = re.compile(r"([&;])")
# A query parameter is secret when its name (lowercased, letters and digits only) contains one of these, or is
# one of the short forms. Hiding a harmless value (`keyframe=1`) costs nothing; showing a password does.
_SECRET_WORDS = ("pas", "pwd", "token", "key", "auth", "secret", "sig", "cred", "session")
_SECRET_NAMES = frozenset({"pw", "p", "sid"})
_PLAIN_USER = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 userinfo: unreserved, percent-encoded, sub-delims and ':'.
_USERINFO_CHARS = frozenset(string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:")
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._~%")
_HINT = (
    "percent-encode reserved characters in the user name and password ('@' as %40, '/' as %2F, ':' in the "
    "user name as %3A, '?' as %3F, '#' as %23), e.g. rtsp://admin:p%40ss@10.0.0.5:554/stream1, and an '@' in "
    "the path or query as %40"
)


def mask_credentials(text: str) -> str:
    """Hide credentials in every URL inside `text`: `rtsp://user:pass@host/x?token=t` -> `rtsp://user:***@host/x?token=***`.

    A URL runs from its `://` to the next whitespace; anything may surround it (log lines, error messages).
    """
    out: list[str] = []
    pos = 0
    while (sep := text.find("://", pos)) >= 0:
        end_match = _WHITESPACE.search(text, sep)
        end = end_match.start() if end_match else len(text)
        out.append(text[pos : sep + 3])
        out.append(_mask_after_scheme(text[sep + 3 : end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _mask_after_scheme(rest: str) -> str:
    rest = _mask_query(rest)
    at = rest.rfind("@")
    if at < 0:
        return rest
    userinfo = rest[:at]
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:" if colon and len(user) <= 64 and all(c in _PLAIN_USER for c in user) else ""
    return f"{shown}{MASK}{rest[at:]}"


def _mask_query(rest: str) -> str:
    question = rest.find("?")
    if question < 0:
        return rest
    query, hash_, fragment = rest[question + 1 :].partition("#")
    parts = _PARAM_SEPARATORS.split(query)  # [param, separator, param, ...]
    for i in range(0, len(parts), 2):
        name, eq, _ = parts[i].partition("=")
        if eq and is_secret_param(name):
            parts[i] = f"{name}={MASK}"
    return f"{rest[: question + 1]}{''.join(parts)}{hash_}{fragment}"


def is_secret_param(name: str) -> bool:
    """True for query parameter names that mean a secret (case-insensitive, percent-decoded, punctuation ignored)."""
    key = "".join(c for c in unquote(name).lower() if c.isalnum())
    return key in _SECRET_NAMES or any(word in key for word in _SECRET_WORDS)


def check_camera_url(url: str) -> str:
    """Return `url` if it is a camera URL whose parts read one way only, else raise ValueError saying what to fix.

    Accepted: rtsp(s)://, http(s):// with an optional `user:password@` (percent-encoded), a host name, IPv4 or a
    bracketed IPv6 address and a port; file:///absolute/path; or an absolute path.
    """
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        msg = "camera url must not contain spaces or control characters; percent-encode them (a space is %20)"
        raise ValueError(msg)
    if url.startswith("/"):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        msg = "camera url must be rtsp://, rtsps://, http(s)://, file:// or an absolute file path"
        raise ValueError(msg)
    if scheme.lower() == "file":
        if not rest.startswith(("/", "localhost/")):
            msg = "a file:// url needs an absolute path, e.g. file:///footage/cam1.mp4 (three slashes)"
            raise ValueError(msg)
        return url
    _check_authority(rest)
    return url


def _check_authority(rest: str) -> None:
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, after = rest[:cut], rest[cut:]
    if "@" in after or authority.count("@") > 1:
        msg = f"camera url has an '@' that is not the one before the host, so the password is ambiguous: {_HINT}"
        raise ValueError(msg)
    userinfo, at, hostport = authority.rpartition("@")
    if at and not all(c in _USERINFO_CHARS for c in userinfo):
        msg = f"camera url has characters in its user name or password that must be encoded: {_HINT}"
        raise ValueError(msg)
    if "%" in userinfo and not _percent_encoding_ok(userinfo):
        msg = "camera url has a '%' in its user name or password that starts no %XX escape: write '%' as %25"
        raise ValueError(msg)
    _check_hostport(hostport)


def _percent_encoding_ok(text: str) -> bool:
    hexdigits = frozenset(string.hexdigits)
    i = text.find("%")
    while i >= 0:
        if len(text) < i + 3 or text[i + 1] not in hexdigits or text[i + 2] not in hexdigits:
            return False
        i = text.find("%", i + 3)
    return True


def _check_hostport(hostport: str) -> None:
    if hostport.startswith("["):
        inside, bracket, port = hostport[1:].partition("]")
        if not bracket:
            msg = "camera url has an IPv6 address without its closing ']', e.g. rtsp://[fd00::5]:554/stream1"
            raise ValueError(msg)
        try:
            ipaddress.IPv6Address(inside.split("%", 1)[0])
        except ValueError as e:
            msg = f"camera url has an invalid IPv6 address in brackets ({e})"
            raise ValueError(msg) from None
        if port and not port.startswith(":"):
            msg = "camera url has text after the IPv6 address's ']'; only ':<port>' may follow it"
            raise ValueError(msg)
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
        if ":" in port:
            msg = "camera url has an IPv6 address without brackets; write it as rtsp://[fd00::5]:554/stream1"
            raise ValueError(msg)
        if not host or not all(c in _HOST_CHARS for c in host):
            msg = "camera url needs a host name or address after '://' (and after 'user:password@', if any)"
            raise ValueError(msg)
    valid_port = len(port) <= 5 and all(c in string.digits for c in port) and 1 <= int(port or 0) <= 65535
    if hostport.endswith(":") or (port and not valid_port):
        msg = "camera url has an invalid port: give a number from 1 to 65535 after the host, e.g. :554"
        raise ValueError(msg)
