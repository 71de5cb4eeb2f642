"""wasmldr gives up every privilege before it reads anything from a client.

In its own user namespace wasmldr is root there, with every capability over
its namespaces: a process that escaped Wasm could remount the host's file
system writable again (``arx.wasmldr.readonly``), and where keepmgr runs as
root and namespaces are off it would hold root's capabilities outright. So,
once the mounts are set, wasmldr

* sets ``no_new_privs``, so that no ``execve`` (of a set-uid program or any
  other) can grant a privilege again;
* clears its ambient capabilities and drops every capability from its
  bounding set, which bounds what any later ``execve`` as root could gain;
* clears its effective, permitted and inheritable capabilities (capset(2)).

It then reads ``/proc/self/status`` to check that all of that holds, and
refuses to go on otherwise: a Keep that cannot drop its privileges does not
start. A process without capabilities to begin with (keepmgr as an ordinary
user, no namespaces) cannot drop its bounding set, and needs not: with no
capabilities and ``no_new_privs`` it can gain none.
"""

from __future__ import annotations

import ctypes
import os

from arx import procutil
from arx.errors import ArxError

# <linux/prctl.h>
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# <linux/capability.h>: version 3 takes two 32-bit words per set.
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"


class PrivilegeError(ArxError):
    code = "privileges"


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _error(what: str) -> PrivilegeError:
    return PrivilegeError(
        f"wasmldr cannot give up its privileges ({what}); the Keep does not start"
    )


def drop_all() -> None:
    """Gives up every privilege for good, or raises ``PrivilegeError``."""
    libc = procutil.libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _error(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    # Ambient capabilities exist since Linux 4.3; EINVAL before that means none.
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    with open(CAP_LAST_CAP_FILE) as f:
        last_cap = int(f.read())
    had_capabilities = int(_status().get("CapEff", "0"), 16) != 0
    for cap in range(last_cap + 1):
        # Without CAP_SETPCAP this fails with EPERM; that is checked below.
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = _CapHeader(version=LINUX_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise _error(f"capset: {os.strerror(ctypes.get_errno())}")
    status = _status()
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        if int(status.get(field, "0"), 16) != 0:
            raise _error(f"{field} is {status[field]}")
    if status.get("NoNewPrivs") != "1":
        raise _error("no_new_privs did not hold")
    if had_capabilities and int(status.get("CapBnd", "0"), 16) != 0:
        raise _error(f"the bounding set is still {status['CapBnd']}")
