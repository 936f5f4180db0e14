"""A process's runs from start to end: the open loggers, the run it exported to its children, and how
its exit, an uncaught exception, SIGTERM, Ctrl-Break and a fork finish or carry them.

Everything here is the process's, not a run's, so it lives in one object, ``registry``; tests start
from a clean one with ``reset()``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import _env, _platform
from ._errors import AmltrackError

if TYPE_CHECKING:
    from ._logger import Logger


class _Terminated(SystemExit):
    """Raised in the main thread on SIGTERM, so finally blocks run and the run is marked killed."""


class _Registry:
    """The process's open loggers, its current one, and the status its exit gives them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.current: Logger | None = None
        self.open: set[Logger] = set()  # strong: a logger lives until it is finished, so exit can drain it
        self.env_run_ours: str | None = None  # the AMLTRACK_RUN_ID this process set, so it is not "inherited"
        self.exit_state: tuple[str, dict[str, Any] | None] | None = None
        self.finishing = 0  # loggers being finished right now; a SIGTERM then must not cut the drain short
        self.hooks_installed = False
        self.previous_excepthook = sys.excepthook

    def add(self, logger: Logger) -> Logger | None:
        """Make ``logger`` the current one, finished at exit if not before; returns the one it replaces.
        Called with ``lock`` held."""
        previous, self.current = self.current, logger
        self.track(logger)
        return previous

    def track(self, logger: Logger) -> None:
        """Finish ``logger`` at exit if not before, without making it the current one."""
        with self.lock:
            self.open.add(logger)

    def export(self, run_id: str, store: str) -> None:
        """Child processes (launchers, data-parallel ranks) log into this run by inheriting these."""
        os.environ[_env.RUN_ID] = run_id
        os.environ[_env.STORE] = store
        self.env_run_ours = run_id

    def inherited_run(self) -> str | None:
        """The run this process was started into, not the one it exported itself."""
        inherited = os.environ.get(_env.RUN_ID) or None
        return inherited if inherited != self.env_run_ours else None

    def forget(self, logger: Logger) -> None:
        """Forget ``logger``, and its run in the environment if this process exported it."""
        with self.lock:
            self.open.discard(logger)
            if self.current is logger:
                self.current = None
            if logger._owner and os.environ.get(_env.RUN_ID) == logger.run_id:
                os.environ.pop(_env.RUN_ID, None)
                if self.env_run_ours == logger.run_id:
                    self.env_run_ours = None

    @contextlib.contextmanager
    def draining(self) -> Iterator[None]:
        """Around a finish: a SIGTERM meanwhile lets it complete instead of cutting it short."""
        self.finishing += 1
        try:
            yield
        finally:
            self.finishing -= 1

    def finish_all(self, status: str, error: dict[str, Any] | None) -> list[Exception]:
        """Finish every open logger as ``status``; returns the errors, each logger finished anyway."""
        errors = []
        for logger in list(self.open):
            try:
                logger._finish(status, error)
            except Exception as e:
                errors.append(e)
        return errors


registry = _Registry()


def reset() -> None:
    """Finish every open logger, ignoring their write errors, and forget the process's current run:
    what each test starts from (``tests/conftest.py``)."""
    for e in registry.finish_all("completed", None):
        if not isinstance(e, AmltrackError):
            raise e
    with registry.lock:
        registry.current = None
        registry.env_run_ours = None


def status_for(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt) or isinstance(e, _Terminated):
        return "killed"
    if isinstance(e, SystemExit) and e.code in (0, None):
        return "completed"
    return "failed"


def error_info(e: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {
        "type": type(e).__qualname__,
        "message": str(e),
        "traceback": "".join(tb)[-4000:],
    }


def ending(e: BaseException) -> tuple[str, dict[str, Any] | None]:
    """The status and error a run gets when ``e`` ends it."""
    status = status_for(e)
    return status, error_info(e) if status == "failed" else None


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    registry.exit_state = ending(exc)
    registry.previous_excepthook(exc_type, exc, tb)


def _on_sigterm(signum: int, frame: Any) -> None:
    registry.exit_state = ("killed", None)
    if registry.finishing or not threading.main_thread().is_alive():
        # Already draining, or the interpreter is on its way out (the main thread has ended before
        # atexit runs): let the drain finish; raising here would abandon it half-way.
        return
    raise _Terminated(128 + signum)


def _on_break(signum: int, frame: Any) -> None:
    """The console's Ctrl-Break (Windows): handled as Ctrl-C is, a KeyboardInterrupt in the main
    thread, so the run is marked killed after writing everything queued. Left alone, it would end
    the process at once, with no atexit and nothing drained, and the run would read as crashed."""
    registry.exit_state = ("killed", None)
    if registry.finishing or not threading.main_thread().is_alive():
        return  # already draining: let the drain finish (see _on_sigterm)
    raise KeyboardInterrupt


def _at_exit() -> None:
    status, error = registry.exit_state or ("completed", None)
    for e in registry.finish_all(status, error):  # the interpreter is exiting: say it, do not raise
        print(f"amltrack: {e}", file=sys.stderr)


def install_hooks() -> None:
    """Finish the open runs at exit, on an uncaught exception and on SIGTERM; once per process."""
    if registry.hooks_installed:
        return
    registry.hooks_installed = True
    atexit.register(_at_exit)
    registry.previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        # SIGTERM reaches no Windows process from outside (os.kill and Task Manager end it
        # outright: the run reads as crashed), but the handler costs nothing there.
        handlers: list[tuple[int, Callable[[int, Any], None]]] = [(signal.SIGTERM, _on_sigterm)]
        brk = _platform.current().break_signal
        if brk is not None:
            handlers.append((brk, _on_break))
        for sig, handler in handlers:
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(sig) == signal.SIG_DFL:
                    signal.signal(sig, handler)


def _after_fork_in_child() -> None:
    registry.lock = threading.RLock()
    registry.env_run_ours = None
    for logger in list(registry.open):
        if not logger.finished:
            logger._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
