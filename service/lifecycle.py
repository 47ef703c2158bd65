"""The lifecycle every long-running vigil process follows: setup -> run_loop until stopped -> teardown.

Signal handlers only record the signal and set the stop event; the loop notices it. A child started by a
supervisor (`vigil up`) ignores SIGINT (the parent owns shutdown) and stops when its parent dies.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import final

from service.errors import VigilServiceError

log = logging.getLogger(__name__)


class ServiceProcess:
    """Subclass and implement `setup`, `run_loop` and `teardown`; call `run()` (final) to execute.

    `run_loop` must return soon after `should_stop()` turns true; wait with `self.stop_event.wait(t)`
    rather than `time.sleep(t)` so stopping is prompt. Usage in a CLI:

        return MyWorker(settings).run()             # installs SIGTERM/SIGINT handlers

    and in a test thread: `w = MyWorker(settings); threading.Thread(target=w.run, kwargs={"handle_signals": False})`,
    then `w.stop()`.
    """

    component = "process"

    def __init__(
        self, stop_event: threading.Event | None = None, is_child: bool = False, watch_parent: bool | None = None
    ) -> None:
        self.stop_event = stop_event or threading.Event()
        self.is_child = is_child  # ignore SIGINT: the supervisor owns shutdown
        # Stop when the parent dies (a supervisor killed with SIGKILL leaves no orphans); default: is_child.
        self.watch_parent = is_child if watch_parent is None else watch_parent
        self.received_signal: int | None = None
        self._parent_pid = os.getppid()

    def setup(self) -> None:
        """Open connections and load what the loop needs. Raising here ends `run()` with exit code 1."""

    def run_loop(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release resources; called even when setup or the loop failed."""

    def stop(self) -> None:
        self.stop_event.set()

    def should_stop(self) -> bool:
        if self.stop_event.is_set():
            return True
        if self.watch_parent and os.getppid() != self._parent_pid:
            log.warning("%s: parent process %d is gone; stopping", self.component, self._parent_pid)
            self.stop_event.set()
            return True
        return False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only record: logging or I/O inside a handler can deadlock on locks the interrupted code holds.
        self.received_signal = signum
        self.stop_event.set()

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        if self.is_child:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGINT, self._on_signal)

    @final
    def run(self, handle_signals: bool = True) -> int:
        """setup -> run_loop -> teardown; returns the process exit code (0 = stopped cleanly)."""
        if handle_signals and threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        code = 0
        try:
            self.setup()
            self.run_loop()
        except VigilServiceError as e:  # an expected failure (Redis unreachable, ...): the message says it all
            log.error("%s stopped: %s", self.component, e)
            code = 1
        except Exception:
            log.exception("%s failed", self.component)
            code = 1
        finally:
            try:
                self.teardown()
            except Exception:
                log.exception("%s teardown failed", self.component)
                code = code or 1
        if self.received_signal is not None:
            log.info("%s stopped on %s", self.component, signal.Signals(self.received_signal).name)
        return code
