"""Runs one WASI preview 1 command module with wasmtime, streaming its output.

stdout and stderr go to OS pipes whose read ends are pumped by threads while
the module runs, so output reaches the client as it is produced. wasmtime
opens the pipes' write ends itself (``/proc/self/fd/N``); capturing through
wasmtime's in-memory callbacks instead can crash the process at exit
(WASM-NOTES §1.1), pipes cannot.

Limits, and what each costs (docs/workloads.md has the user's view):

* memory: ``Store.set_limits``; free, checked only when memory grows. A
  denied ``memory.grow`` returns -1 to the workload (``malloc`` returns NULL),
  which is not a trap, so the Keep reports ``memory_limit`` by the rule in
  ``_memory_verdict``.
* CPU budget: wasmtime fuel. Instrumented code is 10-40 % slower, so the
  engine consumes fuel only when a fuel limit is set.
* wall time and output size are enforced outside the engine (by the server:
  a timer and a byte count), so compute-bound workloads pay nothing for them.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import wasmtime

from arx.errors import WorkloadError
from arx.protocol.messages import MAX_OUTPUT_CHUNK, KeepExit, Limits, StreamName

# wasmtime's trap backtraces can be long; the client gets the start of it.
MAX_TRAP_MESSAGE = 2000
# A workload that fails (trap or non-zero exit) with its linear memory within
# this distance of the memory limit is reported as ``memory_limit``: its last
# allocation most likely asked for more than was left. 1 MiB is dlmalloc's
# usual growth step for small allocations; a single large request refused far
# below the limit is not recognised (the exit then stays the workload's own,
# and ``memory_bytes`` shows how close it came).
MEMORY_LIMIT_SLACK = 1024 * 1024
# Serialized modules are native code for exactly this wasmtime.
WASMTIME_VERSION = importlib.metadata.version("wasmtime")

OutputSink = Callable[[StreamName, bytes], None]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The engine configuration; part of the compile-cache key."""

    # Wasm exception handling: needed by real C++ programs such as Yosys;
    # modules that do not use it are compiled exactly as without it.
    exceptions: bool = True
    fuel: bool = False

    def key(self) -> str:
        return (
            f"wasmtime={WASMTIME_VERSION};exceptions={int(self.exceptions)};fuel={int(self.fuel)}"
        )

    def engine(self) -> wasmtime.Engine:
        config = wasmtime.Config()
        config.wasm_exceptions = self.exceptions
        config.consume_fuel = self.fuel
        return wasmtime.Engine(config)


@dataclass(frozen=True, slots=True)
class CompiledWorkload:
    engine: wasmtime.Engine
    module: wasmtime.Module
    settings: EngineSettings
    # Whether the module came from the compile cache.
    cached: bool = False


@dataclass(frozen=True, slots=True)
class Preopen:
    host: str
    guest: str
    writable: bool


def cache_path(cache_dir: str, module_sha256: bytes, settings: EngineSettings) -> str:
    """The cache file for a module: keyed by its digest, wasmtime and the engine config."""
    key = hashlib.sha256(module_sha256 + b"\0" + settings.key().encode()).hexdigest()
    return os.path.join(cache_dir, f"{key}.cwasm")


def compile_module(
    module_bytes: bytes,
    *,
    settings: EngineSettings | None = None,
    cache_dir: str | None = None,
) -> CompiledWorkload:
    """Validates and compiles (or loads from the cache); ``WorkloadError`` if not a WASI command."""
    settings = settings or EngineSettings()
    engine = settings.engine()
    module: wasmtime.Module | None = None
    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, hashlib.sha256(module_bytes).digest(), settings)
        with contextlib.suppress(wasmtime.WasmtimeError, OSError):
            # A stale or foreign artifact fails to load; it is then rebuilt.
            module = wasmtime.Module.deserialize_file(engine, path)
    cached = module is not None
    if module is None:
        try:
            module = wasmtime.Module(engine, module_bytes)
        except wasmtime.WasmtimeError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
            raise WorkloadError(f"the module is not valid WebAssembly: {first_line}") from exc
    exports = {e.name for e in module.exports}
    if "_start" not in exports:
        raise WorkloadError("the module is not a WASI command: it exports no _start function")
    if path is not None and not cached:
        _store_in_cache(path, module)
    return CompiledWorkload(engine, module, settings, cached)


def _store_in_cache(path: str, module: wasmtime.Module) -> None:
    # Written beside its final name and renamed, so that concurrent Keeps
    # never load a half-written artifact. A cache that cannot be written
    # only costs the next deployment a compile.
    with contextlib.suppress(OSError, wasmtime.WasmtimeError):
        directory = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(module.serialize())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _pump(fd: int, stream: StreamName, sink: OutputSink) -> None:
    try:
        while True:
            data = os.read(fd, MAX_OUTPUT_CHUNK)
            if not data:
                return
            sink(stream, data)
    finally:
        os.close(fd)


def run(
    workload: CompiledWorkload,
    *,
    argv: Sequence[str],
    env: dict[str, str],
    sink: OutputSink,
    stdin_path: str | None = None,
    preopens: Sequence[Preopen] = (),
    limits: Limits | None = None,
    on_start: Callable[[], None] = lambda: None,
) -> KeepExit:
    """Runs ``_start`` and returns how it ended, after all output reached ``sink``.

    ``on_start`` is called just before ``_start`` runs (the wall-time clock
    starts there).
    """
    limits = limits or Limits()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps = [
        threading.Thread(target=_pump, args=(out_r, "stdout", sink), daemon=True),
        threading.Thread(target=_pump, args=(err_r, "stderr", sink), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        result = _run_in_store(
            workload, argv, env, out_w, err_w, stdin_path, preopens, limits, on_start
        )
        # A trap object can keep the store alive through a reference cycle.
        gc.collect()
    finally:
        # The store and the WASI context are gone by now (see _run_in_store),
        # so these were the last write ends and the pumps see end of file.
        for fd in (out_w, err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        for pump in pumps:
            pump.join()
    return result


def _run_in_store(  # noqa: PLR0917 (private helper with one call site)
    workload: CompiledWorkload,
    argv: Sequence[str],
    env: dict[str, str],
    out_w: int,
    err_w: int,
    stdin_path: str | None,
    preopens: Sequence[Preopen],
    limits: Limits,
    on_start: Callable[[], None],
) -> KeepExit:
    linker = wasmtime.Linker(workload.engine)
    linker.define_wasi()
    store = wasmtime.Store(workload.engine)
    if limits.memory_bytes is not None:
        store.set_limits(memory_size=limits.memory_bytes)
    if limits.fuel is not None:
        if not workload.settings.fuel:
            raise WorkloadError("a fuel limit needs an engine that consumes fuel")
        store.set_fuel(limits.fuel)
    wasi = wasmtime.WasiConfig()
    wasi.argv = list(argv)
    # Nothing is inherited from the Keep's own environment.
    wasi.env = list(env.items())
    if stdin_path is not None:
        wasi.stdin_file = stdin_path
    # wasmtime opens these paths itself, so it holds its own descriptors for
    # the pipes; they close when the store is dropped below.
    wasi.stdout_file = f"/proc/self/fd/{out_w}"
    wasi.stderr_file = f"/proc/self/fd/{err_w}"
    for preopen in preopens:
        wasi.preopen_dir(preopen.host, preopen.guest, fs_mutable=preopen.writable)
    store.set_wasi(wasi)
    instance: wasmtime.Instance | None = None
    try:
        try:
            instance = linker.instantiate(store, workload.module)
        except wasmtime.WasmtimeError as exc:
            text = str(exc).strip()
            if limits.memory_bytes is not None and "exceeds memory limits" in text:
                return KeepExit(
                    status="memory_limit",
                    message=f"the module needs more memory than its limit of "
                    f"{limits.memory_bytes} bytes before it starts: {text[:MAX_TRAP_MESSAGE]}",
                )
            return KeepExit(status="failed", message=f"cannot instantiate: {text}"[:2000])
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        on_start()
        try:
            start(store)
            exit_ = KeepExit(status="exited", code=0)
        except wasmtime.ExitTrap as exc:
            exit_ = KeepExit(status="exited", code=exc.code)
        except wasmtime.Trap as exc:
            code = exc.trap_code
            name = code.name.lower() if code is not None else "trap"
            message = f"{name}: {str(exc)[:MAX_TRAP_MESSAGE]}"
            if code == wasmtime.TrapCode.OUT_OF_FUEL:
                return KeepExit(
                    status="out_of_fuel",
                    trap_code=name,
                    message=f"the workload used its CPU budget of {limits.fuel} fuel; {message}",
                    memory_bytes=_memory_bytes(store, instance),
                )
            exit_ = KeepExit(status="trapped", trap_code=name, message=message)
        except wasmtime.WasmtimeError as exc:
            return KeepExit(status="failed", message=str(exc)[:MAX_TRAP_MESSAGE])
        return _memory_verdict(exit_, _memory_bytes(store, instance), limits.memory_bytes)
    finally:
        # Dropping the store closes wasmtime's descriptors for the pipes and
        # the stdin file; without it the pumps would wait for end of file.
        del store, wasi, linker, instance


def _memory_bytes(store: wasmtime.Store, instance: wasmtime.Instance) -> int | None:
    memory = instance.exports(store).get("memory")
    if isinstance(memory, wasmtime.Memory):
        return int(memory.data_len(store))
    return None


def _memory_verdict(exit_: KeepExit, memory: int | None, limit: int | None) -> KeepExit:
    """Adds the memory figure, and says ``memory_limit`` when the limit explains a failure.

    A denied ``memory.grow`` is not a trap, so the Keep cannot see it happen.
    What it can see honestly: the workload failed (trapped or exited non-zero)
    and its memory ended within ``MEMORY_LIMIT_SLACK`` of the limit.
    """
    failed = exit_.status == "trapped" or (exit_.status == "exited" and exit_.code != 0)
    if limit is not None and memory is not None and failed and memory + MEMORY_LIMIT_SLACK > limit:
        how = (
            f"then trapped ({exit_.message})"
            if exit_.status == "trapped"
            else f"then exited with {exit_.code}"
        )
        return KeepExit(
            status="memory_limit",
            code=exit_.code,
            trap_code=exit_.trap_code,
            memory_bytes=memory,
            message=f"the workload's memory reached {memory} bytes of its {limit}-byte limit, "
            f"so allocations beyond it failed; it {how}"[:2000],
        )
    return KeepExit(
        status=exit_.status,
        code=exit_.code,
        trap_code=exit_.trap_code,
        message=exit_.message,
        memory_bytes=memory,
    )
