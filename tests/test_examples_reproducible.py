"""The committed WASI workloads: reproducible from source, and behaving as documented.

Two kinds of checks:

* every committed ``.wasm`` is rebuilt from source with ``examples/build.sh`` and must
  match ``examples/SHA256SUMS`` byte for byte, so a binary in the repository is never
  something other than what its source says;
* every committed ``.wasm`` is run directly under wasmtime (no arx code involved) and its
  output is checked against an independent expectation, so the runtime's own tests can
  rely on what these workloads do.

Output is captured to files, not through wasmtime's in-memory callbacks: those run on a
runtime worker thread that can panic at interpreter exit.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from wasmtime import (
    Config,
    Engine,
    ExitTrap,
    Linker,
    Module,
    Store,
    Trap,
    TrapCode,
    WasiConfig,
)

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "examples" / "build.sh"
SUMS_FILE = REPO / "examples" / "SHA256SUMS"
WASM_DIRS = (REPO / "examples", REPO / "tests" / "workloads")
DEBIAN_RUSTC = Path("/usr/bin/rustc")

MIB = 1 << 20
# The generator in examples/sha256sum/sha256sum.c: xorshift32 (13, 17, 5) from this seed,
# each state emitted as four little-endian bytes.
SHA_SEED = 0x2545F491
# The pattern in tests/workloads/bigout.c: byte i is (i * 31) mod 251.
BIGOUT_MUL = 31
BIGOUT_MOD = 251
# Generous enough for the spin workload to print its line, small enough to stop in
# milliseconds (wasmtime charges about one unit per instruction).
SPIN_FUEL = 5_000_000
ALLOC_LIMIT_BYTES = 16 << 20
# Static data, stack and malloc bookkeeping take part of the limit, so alloc.wasm gets
# somewhat fewer blocks than the limit has MiB; fewer than this means it stopped early.
ALLOC_MIN_BLOCKS = 10


def read_sums() -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in SUMS_FILE.read_text().splitlines():
        digest, path = line.split("  ", 1)
        assert len(digest) == 64, line
        sums[path] = digest
    return sums


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed_wasm() -> list[str]:
    return sorted(
        str(p.relative_to(REPO)) for d in WASM_DIRS for p in d.rglob("*.wasm") if p.is_file()
    )


def toolchain_missing() -> str | None:
    """Why the workloads cannot be rebuilt here, or None if they can."""
    if shutil.which("clang-14") is None:
        return "clang-14 is not installed (scripts/bootstrap installs it)"
    if not DEBIAN_RUSTC.is_file():
        return "/usr/bin/rustc is not installed (scripts/bootstrap installs it)"
    sysroot = subprocess.run(
        [str(DEBIAN_RUSTC), "--print", "sysroot"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (Path(sysroot) / "lib" / "rustlib" / "wasm32-wasi").is_dir():
        return "/usr/bin/rustc has no wasm32-wasi target (install libstd-rust-dev-wasm32)"
    return None


# --- reproducibility ---------------------------------------------------------------------


def test_sums_cover_exactly_the_committed_wasm() -> None:
    # A .wasm without a digest would escape the rebuild check; a digest without a file
    # would mean the recipe and the tree disagree.
    assert sorted(read_sums()) == committed_wasm()


def test_committed_wasm_match_sums() -> None:
    mismatched = {p: d for p, d in read_sums().items() if sha256_file(REPO / p) != d}
    assert mismatched == {}


def test_rebuild_from_source_is_byte_identical(tmp_path: Path) -> None:
    reason = toolchain_missing()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "rebuilt"
    subprocess.run(["bash", str(BUILD_SCRIPT), "--out", str(out)], check=True, cwd=tmp_path)
    rebuilt = {p: sha256_file(out / p) for p in read_sums()}
    assert rebuilt == read_sums()


# --- running the committed binaries under wasmtime ----------------------------------------


@dataclass(frozen=True)
class Run:
    exit_code: int | None  # None when the workload trapped
    trap_code: TrapCode | None
    stdout: bytes
    stderr: bytes


@cache
def plain_engine() -> Engine:
    return Engine()


@cache
def fuel_engine() -> Engine:
    cfg = Config()
    cfg.consume_fuel = True
    return Engine(cfg)


@cache
def module(engine: Engine, rel_path: str) -> Module:
    return Module.from_file(engine, str(REPO / rel_path))


def run_wasm(
    rel_path: str,
    args: Sequence[str],
    tmp_path: Path,
    *,
    env: Sequence[tuple[str, str]] = (),
    stdin_file: Path | None = None,
    preopens: Sequence[tuple[Path, str, bool]] = (),
    memory_limit: int | None = None,
    fuel: int | None = None,
) -> Run:
    engine = fuel_engine() if fuel is not None else plain_engine()
    linker = Linker(engine)
    linker.define_wasi()
    store = Store(engine)
    if fuel is not None:
        store.set_fuel(fuel)
    if memory_limit is not None:
        store.set_limits(memory_size=memory_limit)
    wasi = WasiConfig()
    wasi.argv = [Path(rel_path).stem, *args]
    wasi.env = list(env)
    if stdin_file is not None:
        wasi.stdin_file = str(stdin_file)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    wasi.stdout_file = str(out_path)
    wasi.stderr_file = str(err_path)
    for host, guest, writable in preopens:
        wasi.preopen_dir(str(host), guest, fs_mutable=writable)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module(engine, rel_path))
    exit_code: int | None
    trap_code: TrapCode | None = None
    try:
        instance.exports(store)["_start"](store)
        exit_code = 0
    except ExitTrap as e:
        exit_code = e.code
    except Trap as e:
        exit_code = None
        trap_code = e.trap_code
    return Run(exit_code, trap_code, out_path.read_bytes(), err_path.read_bytes())


def sha_generator_data(mib: int) -> Iterator[bytes]:
    x = SHA_SEED
    for _ in range(mib):
        words = bytearray()
        for _ in range(MIB // 4):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            words += x.to_bytes(4, "little")
        yield bytes(words)


def bigout_pattern(n_bytes: int) -> bytes:
    period = bytes(i * BIGOUT_MUL % BIGOUT_MOD for i in range(BIGOUT_MOD))
    return (period * (n_bytes // BIGOUT_MOD + 1))[:n_bytes]


@pytest.mark.parametrize("rel_path", committed_wasm())
def test_every_workload_is_a_wasi_command(rel_path: str) -> None:
    m = module(plain_engine(), rel_path)
    assert {imp.module for imp in m.imports} == {"wasi_snapshot_preview1"}
    assert {"_start", "memory"} <= {exp.name for exp in m.exports}


def test_hello(tmp_path: Path) -> None:
    run = run_wasm("examples/hello/hello.wasm", [], tmp_path)
    assert run == Run(0, None, b"Hello from a Keep!\n", b"")


def test_hello_echoes_arguments(tmp_path: Path) -> None:
    run = run_wasm("examples/hello/hello.wasm", ["a", "b", "c"], tmp_path)
    assert run == Run(0, None, b"Hello from a Keep!\nargs: a b c\n", b"")


def test_news2_sample_from_stdin(tmp_path: Path) -> None:
    news2 = REPO / "examples" / "news2"
    run = run_wasm("examples/news2/news2.wasm", [], tmp_path, stdin_file=news2 / "vitals.csv")
    assert run == Run(0, None, (news2 / "expected.csv").read_bytes(), b"")


def test_news2_sample_from_file_argument(tmp_path: Path) -> None:
    news2 = REPO / "examples" / "news2"
    run = run_wasm(
        "examples/news2/news2.wasm",
        ["/data/vitals.csv"],
        tmp_path,
        preopens=[(news2, "/data", False)],
    )
    assert run == Run(0, None, (news2 / "expected.csv").read_bytes(), b"")


def test_news2_malformed_row_names_the_line(tmp_path: Path) -> None:
    sample = (REPO / "examples" / "news2" / "vitals.csv").read_text().splitlines()
    # Line 4 of the file gets a temperature that is not a number.
    sample[3] = sample[3].replace("37.2", "warm")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(sample) + "\n")
    run = run_wasm("examples/news2/news2.wasm", [], tmp_path, stdin_file=bad)
    assert run.exit_code == 2
    assert run.stdout == b""
    assert b"line 4" in run.stderr
    assert b"temp_c" in run.stderr


@pytest.mark.parametrize("mib", [0, 1])
def test_sha256sum_matches_hashlib(tmp_path: Path, mib: int) -> None:
    h = hashlib.sha256()
    for chunk in sha_generator_data(mib):
        h.update(chunk)
    run = run_wasm("examples/sha256sum/sha256sum.wasm", [str(mib)], tmp_path)
    assert run == Run(0, None, h.hexdigest().encode() + b"\n", b"")


def test_exitcode(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/exitcode.wasm", ["7", "a", "b"], tmp_path)
    assert run == Run(7, None, b"a b\n", b"to stderr\n")


def test_exitcode_zero(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/exitcode.wasm", ["0"], tmp_path)
    assert run == Run(0, None, b"\n", b"to stderr\n")


def test_trap_keeps_output_written_before_it(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/trap.wasm", [], tmp_path)
    assert run == Run(None, TrapCode.UNREACHABLE, b"before trap\n", b"")


def test_bigout_stdout(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/bigout.wasm", ["1"], tmp_path)
    assert run.exit_code == 0
    assert run.stderr == b""
    assert len(run.stdout) == MIB
    assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(bigout_pattern(MIB)).digest()


def test_bigout_both_streams(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/bigout.wasm", ["1", "both"], tmp_path)
    expected = bigout_pattern(MIB)
    assert run.exit_code == 0
    assert run.stdout == expected
    assert run.stderr == expected


def test_catstdin(tmp_path: Path) -> None:
    # More than one 64 KiB read, every byte value, and a tail that is not a full buffer.
    data = bytes(range(256)) * 1000 + b"tail without newline"
    stdin = tmp_path / "stdin.bin"
    stdin.write_bytes(data)
    run = run_wasm("tests/workloads/catstdin.wasm", [], tmp_path, stdin_file=stdin)
    assert run == Run(0, None, data, b"")


def test_env_shows_exactly_what_was_passed(tmp_path: Path) -> None:
    env = [("KEEP_ID", "keep-42"), ("GREETING", "hello world"), ("EMPTY", "")]
    run = run_wasm("tests/workloads/env.wasm", [], tmp_path, env=env)
    assert run == Run(0, None, b"KEEP_ID=keep-42\nGREETING=hello world\nEMPTY=\n", b"")


def test_env_is_empty_by_default(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/env.wasm", [], tmp_path)
    assert run == Run(0, None, b"", b"")


def test_alloc_stops_at_the_memory_limit(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/alloc.wasm", [], tmp_path, memory_limit=ALLOC_LIMIT_BYTES)
    assert run.exit_code == 1
    assert run.stderr == b"alloc: out of memory\n"
    blocks = int(run.stdout)
    assert ALLOC_MIN_BLOCKS <= blocks <= ALLOC_LIMIT_BYTES // MIB


def test_readfile_reads_from_a_read_only_preopen(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "input.txt").write_bytes(b"line one\nline two\n")
    run = run_wasm(
        "tests/workloads/readfile.wasm", ["/ro/input.txt"], tmp_path, preopens=[(ro, "/ro", False)]
    )
    assert run == Run(0, None, b"line one\nline two\n", b"")


def test_readfile_cannot_write_into_a_read_only_preopen(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "input.txt").write_bytes(b"content\n")
    run = run_wasm(
        "tests/workloads/readfile.wasm",
        ["/ro/input.txt", "/ro/new.txt", "written"],
        tmp_path,
        preopens=[(ro, "/ro", False)],
    )
    assert run.exit_code == 1
    assert run.stdout == b"content\n"
    assert run.stderr.startswith(b"readfile: /ro/new.txt: ")
    assert not (ro / "new.txt").exists()


def test_readfile_writes_into_a_writable_preopen(tmp_path: Path) -> None:
    # The control for the read-only case: the same write succeeds when it is allowed.
    rw = tmp_path / "rw"
    rw.mkdir()
    (rw / "input.txt").write_bytes(b"content\n")
    run = run_wasm(
        "tests/workloads/readfile.wasm",
        ["/rw/input.txt", "/rw/new.txt", "written"],
        tmp_path,
        preopens=[(rw, "/rw", True)],
    )
    assert run == Run(0, None, b"content\n", b"")
    assert (rw / "new.txt").read_bytes() == b"written"


def test_readfile_reports_a_missing_file(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    run = run_wasm(
        "tests/workloads/readfile.wasm", ["/ro/absent.txt"], tmp_path, preopens=[(ro, "/ro", False)]
    )
    assert run == Run(1, None, b"", b"readfile: /ro/absent.txt: No such file or directory\n")


def test_spin_runs_until_its_fuel_is_gone(tmp_path: Path) -> None:
    run = run_wasm("tests/workloads/spin.wasm", [], tmp_path, fuel=SPIN_FUEL)
    assert run == Run(None, TrapCode.OUT_OF_FUEL, b"spinning\n", b"")


def test_slow_really_sleeps(tmp_path: Path) -> None:
    ticks, sleep_ms = 3, 50
    start = time.monotonic()
    run = run_wasm("tests/workloads/slow.wasm", [str(ticks), str(sleep_ms)], tmp_path)
    elapsed = time.monotonic() - start
    assert run == Run(0, None, b"tick 1\ntick 2\ntick 3\n", b"")
    assert elapsed >= (ticks - 1) * sleep_ms / 1000
