"""A read-only host file system for a wasmldr that runs in its own namespaces.

wasmldr's mount namespace starts as a copy of the host's mounts. Before it
reads anything from a client, wasmldr makes every one of them read-only,
recursively, except the few directories it must write: the Keep's own
TMPDIR (the workload's files, the TLS key file) and the compile cache. A
process that escaped Wasm then cannot change a host file, including the
cgroup files that hold its own limits, even where keepmgr runs as root and
the user namespace maps wasmldr to root.

The mounts are changed in wasmldr's namespace only (``unshare`` makes its
propagation private), with ``mount_setattr(2)`` (Linux 5.12): one call sets
``MOUNT_ATTR_RDONLY`` on the whole tree. Making a mount read-only is always
allowed in a user namespace that owns the mount namespace; the writable
directories are bind mounts wasmldr made itself, so it may clear the flag on
them again.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from arx import procutil
from arx.errors import ArxError

# <linux/mount.h> and <fcntl.h>.
MS_BIND = 0x1000
MS_REC = 0x4000
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
# mount_setattr is 442 on every architecture: it came after the syscall
# tables were unified.
SYS_MOUNT_SETATTR = 442


class _MountAttr(ctypes.Structure):
    # struct mount_attr (MOUNT_ATTR_SIZE_VER0 = 32 bytes).
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


class ReadOnlyError(ArxError):
    code = "read_only_root"


def _fail(what: str, path: str) -> ReadOnlyError:
    errno = ctypes.get_errno()
    return ReadOnlyError(
        f"cannot make the host's file system read-only for the Keep ({what} {path}: "
        f"{os.strerror(errno)}); keepmgr --namespaces off runs Keeps without namespaces"
    )


def _set_attr(libc: ctypes.CDLL, path: str, *, set_: int = 0, clear: int = 0) -> None:
    attr = _MountAttr(attr_set=set_, attr_clr=clear, propagation=0, userns_fd=0)
    done = libc.syscall(
        SYS_MOUNT_SETATTR,
        AT_FDCWD,
        os.fsencode(path),
        AT_RECURSIVE,
        ctypes.byref(attr),
        ctypes.sizeof(attr),
    )
    if done != 0:
        raise _fail("mount_setattr", path)


def make_read_only_except(writable: Sequence[str]) -> None:
    """Makes every mount read-only except ``writable`` (existing directories), or raises."""
    libc = procutil.libc()
    for path in writable:
        # Its own mount, so that its flags can differ from its parent's.
        if libc.mount(os.fsencode(path), os.fsencode(path), None, MS_BIND | MS_REC, None) != 0:
            raise _fail("bind mount", path)
    _set_attr(libc, "/", set_=MOUNT_ATTR_RDONLY)
    for path in writable:
        _set_attr(libc, path, clear=MOUNT_ATTR_RDONLY)
