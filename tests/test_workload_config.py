"""keep.toml and the command-line workload settings: every key checked, every error names it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arx.client.workload import (
    DirSpec,
    FileSpec,
    StdinSpec,
    Upload,
    WorkloadConfig,
    config_from_table,
    load_config,
    merge,
    parse_duration_ms,
    parse_size,
)
from arx.errors import UsageError
from arx.protocol.messages import Chunk, Limits, Workload, decode_frame
from tests.conftest import EXAMPLES, WORKLOADS, arx

HELLO = EXAMPLES / "hello" / "hello.wasm"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keep.toml"
    path.write_text(text)
    return path


def test_full_config_parses(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = write(
        tmp_path,
        """
args = ["-v", "x"]
stdin = { file = "in.csv" }
[env]
LANG = "C"
[[dirs]]
path = "/data"
source = "data"
[[dirs]]
path = "/out"
writable = true
results = "out"
[[files]]
path = "/cfg/a.json"
source = "a.json"
[limits]
memory = "64MiB"
wall_time = "1.5s"
fuel = 1_000_000
output = 4096
""",
    )
    config = load_config(path)
    assert config.args == ("-v", "x")
    assert config.env == {"LANG": "C"}
    assert config.stdin == StdinSpec(file=tmp_path / "in.csv")
    assert config.dirs == (
        DirSpec(guest="/data", source=tmp_path / "data"),
        DirSpec(guest="/out", writable=True, results=tmp_path / "out"),
    )
    assert config.files[0].guest == "/cfg/a.json"
    assert config.limits == Limits(
        memory_bytes=64 << 20, wall_time_ms=1500, fuel=1_000_000, output_bytes=4096
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("argz = []", "argz: unknown key"),
        ('args = "a b"', "args: expected an array of strings"),
        ("args = [1]", "args[0]: expected a string"),
        ("env = { A = 1 }", "env.A: expected a string"),
        ("stdin = 3", "stdin: expected a string or a table"),
        ('stdin = { file = "a", text = "b" }', "stdin: give exactly one of"),
        ('stdin = { hex = "zz" }', "stdin.hex: not hex digits"),
        ('stdin = { path = "a" }', "stdin.path: unknown key"),
        ("[[dirs]]\nwritable = true", "dirs[0].path: missing"),
        ('[[dirs]]\npath = "data"', "dirs[0].path: 'data' must be an absolute"),
        ('[[dirs]]\npath = "/a/../b"', "dirs[0].path:"),
        ('[[dirs]]\npath = "/"', "dirs[0].path:"),
        ('[[dirs]]\npath = "/a"\nwritable = "yes"', "dirs[0].writable: expected true"),
        ('[[dirs]]\npath = "/a"\nmode = "rw"', "dirs[0].mode: unknown key"),
        ('[[files]]\npath = "/a/b"', "files[0].source: missing"),
        ("[limits]\nmemory = -1", "limits.memory: must be positive"),
        ('[limits]\nmemory = "lots"', "limits.memory: 'lots' is not a size"),
        ('[limits]\nmemory = "64 furlongs"', "limits.memory:"),
        ("[limits]\nfuel = 1.5", "limits.fuel: expected a positive integer"),
        ("[limits]\nfuel = 0", "limits.fuel: expected a positive integer"),
        ('[limits]\nwall_time = "soon"', "limits.wall_time: 'soon' is not a duration"),
        ("[limits]\nwall_time = 0", "limits.wall_time: must be positive"),
        ('[limits]\noutput = "0B"', "limits.output: must be positive"),
        ("[limits]\ncpu = 1", "limits.cpu: unknown key"),
        ("[limits]\nmemory = 1e30", "limits.memory: expected a size"),
        ("limits = 3", "limits: expected a table"),
        ("args = [", "not valid TOML"),
    ],
)
def test_every_mistake_names_its_key(tmp_path: Path, text: str, names: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert info.value.message.startswith(f"{path}: ")
    assert names in info.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        ("1", 1),
        ("2KiB", 2048),
        ("1.5 MB", 1_500_000),
        ("64MiB", 64 << 20),
        ("1GiB", 1 << 30),
    ],
)
def test_sizes(value: object, expected: int) -> None:
    assert parse_size(value, "k") == expected


@pytest.mark.parametrize(
    ("value", "ms"), [(2, 2000), (0.25, 250), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000)]
)
def test_durations(value: object, ms: int) -> None:
    assert parse_duration_ms(value, "k") == ms


def test_command_line_wins_per_key() -> None:
    base = WorkloadConfig(
        args=("a",),
        env={"A": "1", "B": "1"},
        dirs=(DirSpec(guest="/d", source=Path("x")),),
        limits=Limits(memory_bytes=10, fuel=5),
    )
    over = WorkloadConfig(env={"B": "2"}, limits=Limits(fuel=7))
    merged = merge(base, over)
    assert merged.args == ("a",)
    assert merged.env == {"A": "1", "B": "2"}
    assert merged.limits == Limits(memory_bytes=10, fuel=7)
    assert merged.dirs == base.dirs
    assert merge(base, WorkloadConfig(args=())).args == ()


def test_writable_dir_needs_results_or_discard(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"exactly one of results .* or discard"):
        Upload(HELLO, "hello.wasm", WorkloadConfig(dirs=(DirSpec(guest="/o", writable=True),)))
    with pytest.raises(UsageError, match="only to a writable directory"):
        Upload(
            HELLO,
            "hello.wasm",
            WorkloadConfig(dirs=(DirSpec(guest="/o", source=tmp_path, discard=True),)),
        )


def test_results_dir_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "old").write_text("x")
    spec = DirSpec(guest="/o", writable=True, results=tmp_path / "res")
    with pytest.raises(UsageError, match="exists and is not empty"):
        Upload(HELLO, "hello.wasm", WorkloadConfig(dirs=(spec,)))


def test_upload_body_lists_and_carries_every_byte(tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b.txt").write_bytes(b"b" * 70_000)
    (src / "a.txt").write_bytes(b"a")
    (tmp_path / "extra.bin").write_bytes(b"\x00\x01")
    config = WorkloadConfig(
        stdin=StdinSpec(data=b"in"),
        dirs=(DirSpec(guest="/t", source=src),),
        files=(FileSpec(source=tmp_path / "extra.bin", guest="/t/x/extra.bin"),),
    )
    upload = Upload(HELLO, "hello.wasm", config)
    frames = [decode_frame(f, limit=1 << 24) for f in upload.frames()]
    header = frames[0]
    assert isinstance(header, Workload)
    assert [(e.path, e.kind, e.size) for e in header.entries] == [
        ("sub", "dir", 0),
        ("a.txt", "file", 1),
        ("sub/b.txt", "file", 70_000),
        ("x", "dir", 0),
        ("x/extra.bin", "file", 2),
    ]
    data = b"".join(f.data for f in frames[1:] if isinstance(f, Chunk))
    module = HELLO.read_bytes()
    assert data == module + b"in" + b"a" + b"b" * 70_000 + b"\x00\x01"
    assert upload.total_bytes == len(data)


def test_cli_errors_name_the_option(tmp_path: Path) -> None:
    for flags, text in [
        (("--memory", "many"), "--memory: 'many' is not a size"),
        (("--wall-time", "0"), "--wall-time: must be positive"),
        (("--dir", "a:b:c"), "--dir takes SRC:GUEST or SRC:GUEST:rw"),
        (("--dir", "x:rel"), "--dir: 'rel' must be an absolute"),
        (("--results", "/o"), "--results takes GUEST=DIR"),
        (("-e", "=x"), "--env takes NAME=VALUE"),
        (("--stdin", str(tmp_path / "missing")), "stdin: cannot read"),
    ]:
        run = arx("run", str(WORKLOADS / "env.wasm"), *flags)
        assert run.returncode == 125, flags
        assert run.stderr.decode().splitlines() == [f"arx: {run.stderr.decode()[5:].strip()}"]
        assert text in run.stderr.decode(), (flags, run.stderr)


_keys = st.sampled_from(
    ["args", "env", "stdin", "dirs", "files", "limits", "path", "source", "writable",
     "results", "discard", "file", "text", "hex", "memory", "wall_time", "fuel", "output", "x"]
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["/a", "/a/b", "1MiB", "2s", "00ff", "a/../b", "/"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


_top = st.sampled_from(["args", "env", "stdin", "dirs", "files", "limits"])


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(_top, _values, max_size=6))
def test_any_document_gives_a_config_or_a_usage_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(UsageError):
        config_from_table(doc, Path("/nonexistent"))
