"""The lifecycle every long-running vigil process follows: setup -> run_loop until stopped -> teardown.

Signal handlers only record the signal and set the stop event; the loop notices it. A child started by a
supervisor (`vigil up`) ignores SIGINT (the parent owns shutdown). Children leave with their parent by one
mechanism, `exit_with_parent`: the kernel sends them SIGTERM when the parent dies, however it dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import final

from service.errors import VigilServiceError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
try:  # loaded here, not in a forked child: a child before exec must not import or allocate
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children of a killed supervisor are left running
    _prctl = None


def exit_with_parent(parent: int | None = None) -> None:
    """Have the kernel send this process SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), so it stops cleanly
    even when the parent was SIGKILLed. `parent`: the pid it must have now; if the parent died already, exit.

    `vigil up` runs it in each child between fork and exec (`subprocess.Popen(preexec_fn=...)`, where it survives
    the exec); `vigil api|ingest|worker --exit-with-parent` run it at start for other supervisors."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def exit_with(parent: int) -> Callable[[], None]:
    """A `preexec_fn` for children of the process `parent` (see `exit_with_parent`)."""
    return lambda: exit_with_parent(parent)


class ServiceProcess:
    """Subclass and implement `setup`, `run_loop` and `teardown`; call `run()` (final) to execute.

    `run_loop` must return soon after `should_stop()` turns true; wait with `self.stop_event.wait(t)`
    rather than `time.sleep(t)` so stopping is prompt. Usage in a CLI:

        return MyWorker(settings).run()             # installs SIGTERM/SIGINT handlers

    and in a test thread: `w = MyWorker(settings); threading.Thread(target=w.run, kwargs={"handle_signals": False})`,
    then `w.stop()`.
    """

    component = "process"

    def __init__(self, stop_event: threading.Event | None = None, is_child: bool = False) -> None:
        self.stop_event = stop_event or threading.Event()
        self.is_child = is_child  # ignore SIGINT: the supervisor owns shutdown
        self.received_signal: int | None = None

    def setup(self) -> None:
        """Open connections and load what the loop needs. Raising here ends `run()` with exit code 1."""

    def run_loop(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release resources; called even when setup or the loop failed."""

    def stop(self) -> None:
        self.stop_event.set()

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

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
