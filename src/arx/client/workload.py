"""The workload a client sends: ``keep.toml``, command-line overrides, the upload, the results.

``load_config`` parses and validates a ``keep.toml`` (docs/workloads.md has
the schema); every mistake is a ``UsageError`` that names the key. ``merge``
lays command-line settings over the file's. ``Upload`` turns the result into
the request body the Keep receives: one ``Workload`` frame, then the module,
stdin and every input file as ``Chunk`` frames, streamed from disk so that
inputs of any size cost the client no memory. ``Results`` collects the
archives of writable directories and unpacks them where the user asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import stat
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from arx.errors import ArxError, MessageError, UsageError
from arx.protocol.messages import (
    MAX_ARG_LENGTH,
    MAX_ARGS,
    MAX_ENV_VARS,
    MAX_FUEL,
    MAX_INPUT_CHUNK,
    MAX_INPUT_ENTRIES,
    MAX_MEMORY_LIMIT,
    MAX_MOUNTS,
    MAX_OUTPUT_LIMIT,
    MAX_WALL_TIME_MS,
    Chunk,
    InputEntry,
    Limits,
    Mount,
    Result,
    Workload,
    check_relative_path,
    encode_frame,
)

# The file ``arx run``/``arx deploy`` read when it lies beside the module.
CONFIG_NAME = "keep.toml"
# A keep.toml is a few lines; anything this large is not one.
MAX_CONFIG_BYTES = 1024 * 1024

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_TOP_KEYS = {"args", "env", "stdin", "files", "dirs", "limits"}
_LIMIT_KEYS = {"memory", "wall_time", "fuel", "output"}


@dataclass(frozen=True, slots=True)
class StdinSpec:
    """stdin: a local file sent with the workload, or inline bytes."""

    file: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class DirSpec:
    """A directory the workload sees at ``guest``.

    ``source`` is the local directory whose contents it starts with (none: it
    starts empty). A writable one names where its resulting contents go
    (``results``) or says they are ``discard``-ed.
    """

    guest: str
    source: Path | None = None
    writable: bool = False
    results: Path | None = None
    discard: bool = False


@dataclass(frozen=True, slots=True)
class FileSpec:
    source: Path
    guest: str


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    args: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: StdinSpec | None = None
    dirs: tuple[DirSpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    limits: Limits = field(default_factory=Limits)


# ---------------------------------------------------------------------------
# Values


def parse_size(value: object, key: str) -> int:
    """Bytes from an integer or a string such as ``"64MiB"``, ``"1.5GB"``, ``"4096"``."""
    if isinstance(value, bool):
        raise UsageError(f"{key}: expected a size such as 64MiB, got {value!r}")
    if isinstance(value, int):
        number: float = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if m is None or m.group(2).lower() not in _SIZE_UNITS:
            raise UsageError(
                f"{key}: {value!r} is not a size (a number with B, KB, MB, GB, KiB, MiB or GiB)"
            )
        number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    else:
        raise UsageError(f"{key}: expected a size such as 64MiB, got {type(value).__name__}")
    if number <= 0 or not math.isfinite(number):
        raise UsageError(f"{key}: must be positive, not {value!r}")
    return int(number)


def parse_duration_ms(value: object, key: str) -> int:
    """Milliseconds from seconds (a number) or a string such as ``"500ms"``, ``"2m"``."""
    if isinstance(value, bool):
        raise UsageError(f"{key}: expected a duration such as 10s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", value)
        if m is None or (m.group(2) and m.group(2) not in _TIME_UNITS):
            raise UsageError(f"{key}: {value!r} is not a duration (a number with ms, s, m or h)")
        seconds = float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]
    else:
        raise UsageError(f"{key}: expected a duration such as 10s, got {type(value).__name__}")
    ms = math.ceil(seconds * 1000) if math.isfinite(seconds) else 0
    if ms <= 0:
        raise UsageError(f"{key}: must be positive, not {value!r}")
    return ms


def _bounded(value: int, top: int, key: str) -> int:
    if value > top:
        raise UsageError(f"{key}: {value} is larger than the largest allowed, {top}")
    return value


def parse_limits(table: Mapping[str, Any], prefix: str = "limits") -> Limits:
    unknown = sorted(set(table) - _LIMIT_KEYS)
    if unknown:
        raise UsageError(
            f"{prefix}.{unknown[0]}: unknown key (known: {', '.join(sorted(_LIMIT_KEYS))})"
        )
    memory = table.get("memory")
    wall = table.get("wall_time")
    fuel = table.get("fuel")
    output = table.get("output")
    if fuel is not None and (type(fuel) is not int or fuel <= 0):
        raise UsageError(f"{prefix}.fuel: expected a positive integer, got {fuel!r}")
    return Limits(
        memory_bytes=None
        if memory is None
        else _bounded(parse_size(memory, f"{prefix}.memory"), MAX_MEMORY_LIMIT, f"{prefix}.memory"),
        wall_time_ms=None
        if wall is None
        else _bounded(
            parse_duration_ms(wall, f"{prefix}.wall_time"),
            MAX_WALL_TIME_MS,
            f"{prefix}.wall_time",
        ),
        fuel=None if fuel is None else _bounded(fuel, MAX_FUEL, f"{prefix}.fuel"),
        output_bytes=None
        if output is None
        else _bounded(parse_size(output, f"{prefix}.output"), MAX_OUTPUT_LIMIT, f"{prefix}.output"),
    )


def check_guest_dir(path: object, key: str) -> str:
    if not isinstance(path, str):
        raise UsageError(f"{key}: expected a path string, got {type(path).__name__}")
    parts = path.split("/")
    if not path.startswith("/") or len(parts) < 2 or any(p in ("", ".", "..") for p in parts[1:]):
        raise UsageError(
            f"{key}: {path!r} must be an absolute, normalised path in the workload, "
            "such as /data, and not /"
        )
    return path


# ---------------------------------------------------------------------------
# keep.toml


def _expect(value: object, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UsageError(f"{key}: expected {what}, got {type(value).__name__}")
    return value


def _table_keys(table: Mapping[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")


def load_config(path: Path) -> WorkloadConfig:
    """Reads and validates a keep.toml; relative paths in it are relative to its directory."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UsageError(f"{path} is {size} bytes; a keep.toml is at most {MAX_CONFIG_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return config_from_table(doc, path.parent)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}") from None


def config_from_table(doc: Mapping[str, Any], base: Path) -> WorkloadConfig:
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    args = None
    if "args" in doc:
        items = _expect(doc["args"], list, "args", "an array of strings")
        for i, a in enumerate(items):
            _expect(a, str, f"args[{i}]", "a string")
        args = tuple(items)
    env: dict[str, str] = {}
    for name, value in _expect(doc.get("env", {}), dict, "env", "a table").items():
        _expect(value, str, f"env.{name}", "a string")
        env[check_env_name(name, f"env.{name}")] = value
    stdin = None
    if "stdin" in doc:
        stdin = _parse_stdin(doc["stdin"], base)
    dirs = []
    for i, item in enumerate(_expect(doc.get("dirs", []), list, "dirs", "an array of tables")):
        key = f"dirs[{i}]"
        table = _expect(item, dict, key, "a table")
        _table_keys(table, {"path", "source", "writable", "results", "discard"}, key)
        if "path" not in table:
            raise UsageError(f"{key}.path: missing (the directory's path in the workload)")
        source = table.get("source")
        results = table.get("results")
        dirs.append(
            DirSpec(
                guest=check_guest_dir(table["path"], f"{key}.path"),
                source=None
                if source is None
                else base / _expect(source, str, f"{key}.source", "a path string"),
                writable=_expect(table.get("writable", False), bool, f"{key}.writable", "true"),
                results=None
                if results is None
                else base / _expect(results, str, f"{key}.results", "a path string"),
                discard=_expect(table.get("discard", False), bool, f"{key}.discard", "true"),
            )
        )
    files = []
    for i, item in enumerate(_expect(doc.get("files", []), list, "files", "an array of tables")):
        key = f"files[{i}]"
        table = _expect(item, dict, key, "a table")
        _table_keys(table, {"path", "source"}, key)
        for needed in ("path", "source"):
            if needed not in table:
                raise UsageError(f"{key}.{needed}: missing")
        files.append(
            FileSpec(
                source=base / _expect(table["source"], str, f"{key}.source", "a path string"),
                guest=check_guest_dir(table["path"], f"{key}.path"),
            )
        )
    limits = parse_limits(_expect(doc.get("limits", {}), dict, "limits", "a table"))
    return WorkloadConfig(
        args=args, env=env, stdin=stdin, dirs=tuple(dirs), files=tuple(files), limits=limits
    )


def check_env_name(name: str, key: str) -> str:
    if not name or "=" in name or "\0" in name:
        raise UsageError(f"{key}: {name!r} is not an environment variable name")
    return name


def _parse_stdin(value: object, base: Path) -> StdinSpec:
    if isinstance(value, str):
        return StdinSpec(data=value.encode())
    table = _expect(value, dict, "stdin", "a string or a table with file, text or hex")
    _table_keys(table, {"file", "text", "hex"}, "stdin")
    if len(table) != 1:
        raise UsageError("stdin: give exactly one of file, text or hex")
    if "file" in table:
        return StdinSpec(file=base / _expect(table["file"], str, "stdin.file", "a path string"))
    if "text" in table:
        return StdinSpec(data=_expect(table["text"], str, "stdin.text", "a string").encode())
    hex_text = _expect(table["hex"], str, "stdin.hex", "a string of hex digits")
    try:
        return StdinSpec(data=bytes.fromhex(hex_text))
    except ValueError as exc:
        raise UsageError(f"stdin.hex: not hex digits: {exc}") from exc


def merge(base: WorkloadConfig, over: WorkloadConfig) -> WorkloadConfig:
    """``over`` (the command line) wins: args and stdin whole, env/limits per key, dirs/files
    per guest path."""
    dirs = {d.guest: d for d in base.dirs}
    dirs.update({d.guest: d for d in over.dirs})
    files = {f.guest: f for f in base.files}
    files.update({f.guest: f for f in over.files})
    limits = replace(
        base.limits,
        **{
            name: getattr(over.limits, name)
            for name in ("memory_bytes", "wall_time_ms", "fuel", "output_bytes")
            if getattr(over.limits, name) is not None
        },
    )
    return WorkloadConfig(
        args=over.args if over.args is not None else base.args,
        env={**base.env, **over.env},
        stdin=over.stdin if over.stdin is not None else base.stdin,
        dirs=tuple(dirs.values()),
        files=tuple(files.values()),
        limits=limits,
    )


# ---------------------------------------------------------------------------
# The upload


@dataclass(frozen=True, slots=True)
class _Source:
    """Where the bytes of one announced item come from."""

    path: Path | None
    data: bytes | None
    size: int


class Upload:
    """The request body for one workload, built and checked before anything is sent."""

    def __init__(self, module: Path, program: str, config: WorkloadConfig) -> None:
        self.config = config
        self._sources: list[_Source] = [_file_source(module, "the module")]
        if self._sources[0].size == 0:
            raise UsageError(f"{module} is empty")
        stdin_size = None
        if config.stdin is not None:
            if config.stdin.file is not None:
                src = _file_source(config.stdin.file, "stdin")
            else:
                data = config.stdin.data or b""
                src = _Source(None, data, len(data))
            self._sources.append(src)
            stdin_size = src.size
        mounts, entries, results = self._layout(config)
        if len(config.args or ()) > MAX_ARGS:
            raise UsageError(f"args: more than {MAX_ARGS} arguments")
        for i, a in enumerate(config.args or ()):
            if len(a) > MAX_ARG_LENGTH:
                raise UsageError(f"args[{i}]: longer than {MAX_ARG_LENGTH} characters")
        if len(config.env) > MAX_ENV_VARS:
            raise UsageError(f"env: more than {MAX_ENV_VARS} variables")
        try:
            self.header = Workload(
                program=program[:64],
                args=config.args or (),
                env=config.env,
                module_size=self._sources[0].size,
                stdin_size=stdin_size,
                mounts=tuple(mounts),
                entries=tuple(entries),
                limits=config.limits,
            )
        except MessageError as exc:
            raise UsageError(f"the workload configuration is not valid: {exc.message}") from exc
        self.results = Results(results)

    def _layout(
        self, config: WorkloadConfig
    ) -> tuple[list[Mount], list[InputEntry], dict[int, Path]]:
        mounts: list[Mount] = []
        entries: list[InputEntry] = []
        results: dict[int, Path] = {}
        index: dict[str, int] = {}
        for spec in config.dirs:
            key = f"dir {spec.guest}"
            if spec.writable and (spec.results is None) == (not spec.discard):
                raise UsageError(
                    f"{key}: a writable directory needs exactly one of results (a local "
                    "directory for its contents after the run) or discard"
                )
            if not spec.writable and (spec.results is not None or spec.discard):
                raise UsageError(f"{key}: results and discard apply only to a writable directory")
            if not spec.writable and spec.source is None:
                raise UsageError(f"{key}: a read-only directory needs a source directory")
            if spec.results is not None:
                _check_results_dir(spec.results, key)
                results[len(mounts)] = spec.results
            index[spec.guest] = len(mounts)
            mounts.append(
                Mount(guest=spec.guest, writable=spec.writable, results=spec.results is not None)
            )
            if spec.source is not None:
                self._add_tree(spec.source, len(mounts) - 1, entries, key)
        for file_spec in config.files:
            key = f"file {file_spec.guest}"
            parent, _, _name = file_spec.guest.rpartition("/")
            if not parent:
                raise UsageError(f"{key}: a file must be inside a directory, such as /data/x")
            # A file goes into the directory mounted at its parent, or the
            # nearest mounted ancestor; otherwise its parent becomes a
            # read-only directory of its own.
            owner = None
            probe = parent
            while probe:
                if probe in index:
                    owner = probe
                    break
                probe = probe.rpartition("/")[0]
            if owner is None:
                owner = parent
                index[owner] = len(mounts)
                mounts.append(Mount(guest=owner))
            rel = file_spec.guest[len(owner) + 1 :]
            have = {(e.mount, e.path) for e in entries}
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                sub = "/".join(parts[:depth])
                if (index[owner], sub) not in have:
                    entries.append(InputEntry(mount=index[owner], path=sub, kind="dir"))
                    have.add((index[owner], sub))
            if (index[owner], rel) in have:
                raise UsageError(f"{key}: the same path is already sent from a directory")
            src = _file_source(file_spec.source, key)
            self._sources.append(src)
            entries.append(InputEntry(mount=index[owner], path=rel, size=src.size))
        if len(mounts) > MAX_MOUNTS:
            raise UsageError(f"dirs: more than {MAX_MOUNTS} directories")
        if len(entries) > MAX_INPUT_ENTRIES:
            raise UsageError(f"dirs: more than {MAX_INPUT_ENTRIES} files and directories")
        return mounts, entries, results

    def _add_tree(self, root: Path, mount: int, entries: list[InputEntry], key: str) -> None:
        if not root.is_dir():
            raise UsageError(f"{key}: source {root} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in dirnames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if os.path.islink(os.path.join(dirpath, name)):
                    raise UsageError(f"{key}: {root}/{rel} is a symbolic link; arx sends no links")
                entries.append(InputEntry(mount=mount, path=rel, kind="dir"))
            for name in sorted(filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                try:
                    check_relative_path(rel)
                except MessageError as exc:
                    raise UsageError(f"{key}: {exc.message}") from exc
                src = _file_source(Path(dirpath) / name, f"{key}: {rel}")
                self._sources.append(src)
                entries.append(InputEntry(mount=mount, path=rel, size=src.size))

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self._sources)

    def frames(self) -> Iterator[bytes]:
        """The body: the header frame, then every byte as ``Chunk`` frames, in order."""
        yield encode_frame(self.header)
        for source in self._sources:
            if source.data is not None:
                for off in range(0, len(source.data), MAX_INPUT_CHUNK):
                    yield encode_frame(Chunk(data=source.data[off : off + MAX_INPUT_CHUNK]))
                continue
            assert source.path is not None
            left = source.size
            try:
                with open(source.path, "rb") as f:
                    while left > 0:
                        data = f.read(min(MAX_INPUT_CHUNK, left))
                        if not data:
                            break
                        left -= len(data)
                        yield encode_frame(Chunk(data=data))
            except OSError as exc:
                raise UsageError(f"cannot read {source.path}: {exc.strerror}") from exc
            if left:
                raise UsageError(f"{source.path} shrank while it was being sent")


def _walk_error(exc: OSError) -> None:
    raise UsageError(f"cannot read {exc.filename}: {exc.strerror}")


def _file_source(path: Path, what: str) -> _Source:
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what}: {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what}: cannot read {path}: permission denied")
    return _Source(path, None, st.st_size)


def _check_results_dir(path: Path, key: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(
            f"{key}: results directory {path} exists and is not empty; arx does not overwrite files"
        )


class Results:
    """Result archives as they arrive, checked against the Keep's account, then unpacked."""

    def __init__(self, destinations: dict[int, Path]) -> None:
        self.destinations = destinations
        self._files: dict[int, IO[bytes]] = {}
        self._digests: dict[int, Any] = {}

    def write(self, mount: int, data: bytes) -> None:
        if mount not in self.destinations:
            raise ArxError(f"the Keep sent results for directory {mount}, which asked for none")
        if mount not in self._files:
            self._files[mount] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
            self._digests[mount] = hashlib.sha256()
        self._files[mount].write(data)
        self._digests[mount].update(data)

    def finish(self, result: Result) -> list[Path]:
        """Checks every archive against ``result`` and unpacks it; returns the directories."""
        try:
            written: list[Path] = []
            if result.exit.status in ("timeout", "output_limit", "killed"):
                # The Keep was ended with the workload still running; its
                # writable directories were discarded with it.
                return written
            infos = {a.mount: a for a in result.archives}
            for mount, dest in self.destinations.items():
                info = infos.get(mount)
                f = self._files.get(mount)
                size = f.tell() if f is not None else 0
                digest = (self._digests[mount] if f else hashlib.sha256()).digest()
                if info is None or info.size != size or info.sha256 != digest:
                    raise ArxError(
                        f"the result archive for {dest} did not arrive whole "
                        f"({size} bytes received)"
                    )
                dest.mkdir(parents=True, exist_ok=True)
                if f is not None:
                    f.seek(0)
                    try:
                        with tarfile.open(fileobj=f, mode="r:") as tar:
                            tar.extractall(dest, filter="data")
                    except (tarfile.TarError, OSError) as exc:
                        raise ArxError(f"cannot unpack the results into {dest}: {exc}") from exc
                written.append(dest)
            return written
        finally:
            for f in self._files.values():
                with contextlib.suppress(OSError):
                    f.close()
