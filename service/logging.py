"""One `setup_logging()` for every vigil process, with a filter that masks credentials in URLs.

The filter sits on the root handlers, so it sees every record that is written (including records of
third-party loggers and tracebacks): `rtsp://user:pass@host` becomes `rtsp://user:***@host`.
"""

from __future__ import annotations

import logging
import sys

from service.messages import mask_credentials

FORMAT = "%(asctime)s %(levelname)s %(component)s %(name)s: %(message)s"


class CredentialFilter(logging.Filter):
    """Renders the message once, masks URL passwords in it and in the traceback text, keeps the record."""

    def __init__(self, component: str = "vigil") -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_credentials(record.exc_text)
        if not hasattr(record, "component"):
            record.component = self.component
        return True


def setup_logging(component: str, level: int | str = logging.INFO) -> None:
    """Configure the root logger for a process; safe to call again (replaces its own handler and filters)."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, CredentialFilter)]:
            handler.removeFilter(old)
        handler.addFilter(CredentialFilter(component))
        handler.setFormatter(logging.Formatter(FORMAT))
