"""What the client shows on stderr while a deployment works.

Three audiences, three behaviours:

* ``--verbose``: every step as one line, ``arx: …``, for logs and bug reports.
* stderr is a terminal: one transient status line (a spinner, the current
  step, the upload's progress, the time spent) that disappears when the
  workload's own output begins or the deployment ends, so that output is
  never mixed with it.
* anything else (a pipe, a file, a test): nothing but notices and errors, so
  that a workload's stderr arrives byte for byte.

Notices (waiting for a host at its limit) are shown in every case.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

MIB = 1024 * 1024


class StepDisplay:
    """Receives the deployment's steps and shows them as the module docstring says.

    Used as a context manager: leaving it always removes the status line,
    whatever happened, before anything else (an error line) is printed.
    """

    def __init__(self, *, verbose: bool, live: bool) -> None:
        self.verbose = verbose
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._step = ""
        if live:
            # Imported here: rich.progress costs tens of milliseconds, which a
            # run without a terminal should not pay.
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    @classmethod
    def for_stderr(cls, *, verbose: bool) -> StepDisplay:
        """A status line only on a real terminal that can redraw one, and not with --verbose."""
        live = not verbose and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        return cls(verbose=verbose, live=live)

    def __enter__(self) -> StepDisplay:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("", total=None)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def step(self, message: str) -> None:
        if self.verbose:
            print(f"arx: {message}", file=sys.stderr, flush=True)
        self._step = message
        # Drawn at once: a step shorter than the refresh interval is still seen.
        self._describe(message, refresh=True)

    def sent(self, done: int, total: int) -> None:
        """The upload's progress: ``done`` of ``total`` bytes have left for the Keep."""
        self._describe(f"{self._step}: {done / MIB:.1f} of {total / MIB:.1f} MiB")

    def notice(self, message: str) -> None:
        with self._lock:
            if self._progress is not None:
                # Printed above the status line, which stays.
                self._progress.console.print(f"arx: {message}", markup=False, highlight=False)
                return
        print(f"arx: {message}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Removes the status line for good (idempotent): output or the end comes next."""
        with self._lock:
            progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    def _describe(self, text: str, *, refresh: bool = False) -> None:
        with self._lock:
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, description=text, refresh=refresh)
