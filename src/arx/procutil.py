"""Small process-hygiene helpers shared by keepldr and wasmldr."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, for the system calls Python does not wrap; errno is kept for ctypes."""
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(expected_parent: int, sig: int = signal.SIGKILL) -> None:
    """Asks the kernel to send ``sig`` (SIGKILL) to this process when its parent dies.

    This is what guarantees no orphans even when keepmgr itself is killed
    with SIGKILL and has no chance to clean up. The check of the parent's pid
    afterwards closes the race where the parent died before the request.
    A process that must clean up first (wasmldr removes the workload's files)
    asks for SIGTERM and handles it by cleaning up and exiting at once.
    """
    if sys.platform == "linux":
        libc().prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)
