"""Kernel-enforced limits on each Keep's processes (see docs/containment.md).

Where the cgroup v1 ``memory`` and ``pids`` hierarchies are writable, every
Keep gets one cgroup in each, named after its id under a parent directory
(``arx-keepmgr`` by default). The kernel then enforces the Keep's memory
(resident memory, not the virtual reservations wasmtime makes, which is why
``RLIMIT_AS`` is not used) and its number of tasks, and keepmgr can find and
kill every process of a Keep even after keepmgr itself restarted. The cgroups
are removed when the Keep ends.

Where they are not writable, keepldr falls back to rlimits it sets on itself
and inherits to wasmldr: ``RLIMIT_DATA`` (private writable memory; wasmtime's
``PROT_NONE`` reservations do not count until used), ``RLIMIT_NOFILE`` and
``RLIMIT_CORE`` = 0 (which apply in every case).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
DEFAULT_CGROUP_PARENT = "arx-keepmgr"
CONTROLLERS = ("memory", "pids")
# The cpu controller is used only when Keeps have a CPU limit (--keep-cpus).
CPU_CONTROLLER = "cpu"
ALL_CONTROLLERS = (*CONTROLLERS, CPU_CONTROLLER)
# The kernel's default CFS period; a Keep's quota is its share of it.
CFS_PERIOD_US = 100_000
# The smallest quota the kernel accepts is 1 ms a period: 0.01 CPUs.
MIN_KEEP_CPUS = 0.01
# More than the host has limits nothing; this only keeps the quota a sane number.
MAX_KEEP_CPUS = 4096.0
# A parent name is one path component that cannot escape the hierarchy.
_PARENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Killing a cgroup's tasks races with tasks that fork; a few rounds suffice
# because the pids controller bounds how many there can be.
KILL_ROUNDS = 20
# After the last task exits the kernel may need a moment before rmdir works.
RMDIR_ATTEMPTS = 50
RMDIR_PAUSE = 0.02


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepLimits:
    """What one Keep may use. ``memory_bytes`` covers keepldr and wasmldr together."""

    memory_bytes: int
    pids: int
    nofile: int
    # CPUs' worth of time per period (0: no limit), enforced by CFS bandwidth control.
    cpus: float = 0.0


class KeepCgroups:
    """The cgroups of one Keep, one directory per controller."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self.paths = paths

    def add(self, pid: int) -> None:
        for path in self.paths:
            (path / "cgroup.procs").write_text(f"{pid}\n")

    def procs(self) -> list[int]:
        pids: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(pids)

    def kill_all(self) -> None:
        for _ in range(KILL_ROUNDS):
            pids = self.procs()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> list[Path]:
        """Kills what is left and removes the directories; returns those it could not remove."""
        self.kill_all()
        left: list[Path] = []
        for path in self.paths:
            for _ in range(RMDIR_ATTEMPTS):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(RMDIR_PAUSE)
            else:
                left.append(path)
        return left


class Cgroups:
    """The cgroup v1 parent directories keepmgr puts Keeps under, if writable."""

    def __init__(
        self,
        parent: str = DEFAULT_CGROUP_PARENT,
        root: Path = CGROUP_V1_ROOT,
        *,
        cpu: bool = False,
    ) -> None:
        if not _PARENT_NAME.match(parent):
            raise ValueError(f"invalid cgroup parent name {parent!r}")
        self.controllers = ALL_CONTROLLERS if cpu else CONTROLLERS
        self.parents = tuple(root / c / parent for c in self.controllers)
        # Where any keepmgr with this parent may have left a Keep's cgroups,
        # whatever its own controllers were.
        self._all_parents = tuple(root / c / parent for c in ALL_CONTROLLERS)
        self.available = False
        self.reason = ""
        try:
            for c, path in zip(self.controllers, self.parents, strict=True):
                if not (root / c / "cgroup.procs").exists():
                    raise OSError(f"no cgroup v1 {c} hierarchy at {root / c}")
                path.mkdir(exist_ok=True)
                if not os.access(path, os.W_OK):
                    raise OSError(f"{path} is not writable")
            self.available = True
        except OSError as exc:
            self.reason = str(exc)

    def create(self, keep_id: str, limits: KeepLimits) -> KeepCgroups:
        """Makes the Keep's cgroups with their limits; raises OSError if that fails."""
        made = KeepCgroups(tuple(parent / keep_id for parent in self.parents))
        memory, pids = made.paths[:2]
        for parent in self.parents:
            # Another keepmgr sharing the parent may have removed it when it stopped.
            parent.mkdir(exist_ok=True)
        try:
            for path in made.paths:
                path.mkdir()
            (memory / "memory.limit_in_bytes").write_text(f"{limits.memory_bytes}\n")
            # Without a swap limit the kernel would page a Keep out instead of
            # enforcing its memory; memsw exists only with swap accounting.
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(f"{limits.memory_bytes}\n")
            (pids / "pids.max").write_text(f"{limits.pids}\n")
            if CPU_CONTROLLER in self.controllers:
                cpu = made.paths[2]
                quota = round(limits.cpus * CFS_PERIOD_US) if limits.cpus > 0 else -1
                (cpu / "cpu.cfs_period_us").write_text(f"{CFS_PERIOD_US}\n")
                (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        except OSError:
            made.remove()
            raise
        return made

    def existing(self, keep_id: str) -> KeepCgroups | None:
        paths = tuple(parent / keep_id for parent in self._all_parents)
        present = tuple(p for p in paths if p.is_dir())
        return KeepCgroups(present) if present else None

    def remove_parents(self) -> None:
        """Removes the parent directories if no Keep of any keepmgr is left in them."""
        for parent in self._all_parents:
            with contextlib.suppress(OSError):
                parent.rmdir()


def oom_killed(cg: KeepCgroups) -> bool:
    for path in cg.paths:
        control = path / "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in control.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill" and value.strip() != "0":
                    return True
    return False


# The namespaces a software Keep's wasmldr gets (docs/containment.md). The
# network namespace has only a loopback interface that is down: the workload
# port is a socket keepldr bound in the host's network and handed over.
NAMESPACE_FLAGS = ("--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                   "--mount-proc", "--ipc", "--uts", "--net")  # fmt: skip
NAMESPACE_PROBE_TIMEOUT = 10.0


def namespace_prefix() -> list[str]:
    """The command prefix that starts a program in fresh namespaces.

    ``setpriv --pdeathsig KILL`` makes ``unshare`` die with keepldr (the
    parent-death signal survives the exec), and ``--kill-child`` makes the
    program die with ``unshare``: the chain of parent-death signals that keeps
    a killed keepmgr from leaving orphans stays unbroken.
    """
    import shutil

    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if unshare is None or setpriv is None:
        raise OSError("unshare or setpriv (util-linux) is not installed")
    return [setpriv, "--pdeathsig", "KILL", "--", unshare, *NAMESPACE_FLAGS, "--"]


def namespaces_work() -> str | None:
    """None if the namespaces can be made here, else why not."""
    import subprocess

    try:
        prefix = namespace_prefix()
        done = subprocess.run(
            [*prefix, "true"],
            capture_output=True,
            timeout=NAMESPACE_PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
    return None


def apply_rlimits(limits: KeepLimits, *, with_memory: bool) -> None:
    """Called by keepldr on itself before it starts wasmldr, which inherits them."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
    if with_memory:
        resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
