"""Small process-hygiene helpers shared by keepldr and wasmldr."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """Asks the kernel to SIGKILL this process when its parent dies.

    This is what guarantees no orphans even when keepmgr itself is killed
    with SIGKILL and has no chance to clean up. The check of the parent's pid
    afterwards closes the race where the parent died before the request.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)
