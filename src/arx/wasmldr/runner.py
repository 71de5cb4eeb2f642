"""Runs one WASI preview 1 command module with wasmtime, streaming its output.

stdout and stderr go to OS pipes whose read ends are pumped by threads while
the module runs, so output reaches the client as it is produced. wasmtime
opens the pipes' write ends itself (``/proc/self/fd/N``); capturing through
wasmtime's in-memory callbacks instead can crash the process at exit
(WASM-NOTES §1.1), pipes cannot.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import wasmtime

from arx.errors import WorkloadError
from arx.protocol.messages import MAX_OUTPUT_CHUNK, KeepExit, StreamName

# wasmtime's trap backtraces can be long; the client gets the start of it.
MAX_TRAP_MESSAGE = 2000

OutputSink = Callable[[StreamName, bytes], None]


@dataclass(frozen=True, slots=True)
class CompiledWorkload:
    engine: wasmtime.Engine
    module: wasmtime.Module


def compile_module(module_bytes: bytes) -> CompiledWorkload:
    """Validates and compiles; raises ``WorkloadError`` for anything that is not a WASI command."""
    engine = wasmtime.Engine()
    try:
        wasmtime.Module.validate(engine, module_bytes)
        module = wasmtime.Module(engine, module_bytes)
    except wasmtime.WasmtimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise WorkloadError(f"the module is not valid WebAssembly: {first_line}") from exc
    exports = {e.name for e in module.exports}
    if "_start" not in exports:
        raise WorkloadError("the module is not a WASI command: it exports no _start function")
    return CompiledWorkload(engine, module)


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
) -> KeepExit:
    """Runs ``_start`` and returns how it ended, after all output reached ``sink``."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps = [
        threading.Thread(target=_pump, args=(out_r, "stdout", sink), daemon=True),
        threading.Thread(target=_pump, args=(err_r, "stderr", sink), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        result = _run_in_store(workload, argv, env, out_w, err_w)
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


def _run_in_store(
    workload: CompiledWorkload, argv: Sequence[str], env: dict[str, str], out_w: int, err_w: int
) -> KeepExit:
    linker = wasmtime.Linker(workload.engine)
    linker.define_wasi()
    store = wasmtime.Store(workload.engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = list(argv)
    wasi.env = list(env.items())
    # wasmtime opens these paths itself, so it holds its own descriptors for
    # the pipes; they close when the store is dropped below.
    wasi.stdout_file = f"/proc/self/fd/{out_w}"
    wasi.stderr_file = f"/proc/self/fd/{err_w}"
    store.set_wasi(wasi)
    try:
        instance = linker.instantiate(store, workload.module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        return KeepExit(status="exited", code=0)
    except wasmtime.ExitTrap as exc:
        return KeepExit(status="exited", code=exc.code)
    except wasmtime.Trap as exc:
        code = exc.trap_code
        name = code.name.lower() if code is not None else "trap"
        return KeepExit(status="trapped", message=f"{name}: {str(exc)[:MAX_TRAP_MESSAGE]}")
    except wasmtime.WasmtimeError as exc:
        return KeepExit(status="failed", message=str(exc)[:MAX_TRAP_MESSAGE])
    finally:
        # Dropping the store closes wasmtime's descriptors for the pipes;
        # without it the pumps would wait for end of file forever.
        del store, wasi, linker
