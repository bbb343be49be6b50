"""Ctrl-C and ``kill``: stop after the current update and save, instead of losing the run."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``last.pt``; exit with ``exit_code``."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class SignalReceived(BaseException):
    """Raised by the handler inside :meth:`StopRequests.at_once`: the work stops mid-way.

    A BaseException, as KeyboardInterrupt: no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum


class StopRequests:
    """While active, SIGINT/SIGTERM only set :attr:`signum`; the loop checks it between updates.

    A second Ctrl-C aborts at once (KeyboardInterrupt), for a user who will not wait. Outside the
    main thread (where handlers cannot be installed) nothing changes.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._at_once = False
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Within, a signal raises :class:`SignalReceived` at once instead of waiting: for work
        with nothing to save mid-way (the final test), so nothing to wait for."""
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self._at_once:
            raise SignalReceived(signum)
        log.warning(
            "%s received: finishing the current update, then saving checkpoints/last.pt "
            "(Ctrl-C again aborts without saving)",
            signal.Signals(signum).name,
        )
