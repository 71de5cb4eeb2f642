"""The ``sim`` backend's platform: a simulated AMD key chain and the runtime measurement.

``sim`` exercises the whole attested path on machines without a TEE. Its
reports have the real SEV-SNP v3 layout and are signed by a simulated VCEK
under a simulated ASK and ARK with AMD's certificate profile, and the client
verifies them with the same code as AMD's. But the chain's private keys live
on the host, so the host can sign anything: **sim protects nothing**. A client
accepts its root only when the user has trusted it explicitly.

The chain lives in the user's data directory (``$ARX_SIM_DIR``, or
``$XDG_DATA_HOME/arx/sim``, or ``~/.local/share/arx/sim``), made once by
``arx sim init``.

MEASUREMENT is a SHA-384 over the Keep's runtime as launched: every file of
the ``arx`` package (wasmldr's code) and of the ``wasmtime`` package, its
native library included (what wasmldr loads to run Wasm), in a fixed order.
``arx measure`` computes the same value without launching anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from arx.errors import BackendError, UsageError

if TYPE_CHECKING:
    from arx.attestation.snp_sim import SimAmdChain

MEASUREMENT_DOMAIN: Final = b"arx sim runtime v1"
# The packages whose files make up the Keep's runtime, as wasmldr loads it.
MEASURED_PACKAGES: Final = ("arx", "wasmtime")
# Byte-code caches are written by whoever ran the code first; they are not
# what was launched, so they are not measured.
_SKIPPED_SUFFIXES: Final = (".pyc", ".pyo")
_SKIPPED_DIRS: Final = frozenset({"__pycache__"})
CHAIN_FILES: Final = (
    "product",
    "ark.pem",
    "ark.key",
    "ask.pem",
    "ask.key",
    "asvk.pem",
    "asvk.key",
    "vcek.pem",
    "vcek.key",
)
# The public half of the chain, which is what a client trusts.
PUBLIC_FILES: Final = ("product", "ark.pem", "ask.pem", "asvk.pem")
_MEASUREMENT_CACHE: Final = "measurement-cache.json"


def sim_dir() -> Path:
    explicit = os.environ.get("ARX_SIM_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "arx" / "sim"


def chain_exists(directory: Path | None = None) -> bool:
    directory = directory or sim_dir()
    return all((directory / name).is_file() for name in CHAIN_FILES)


def init_chain(directory: Path | None = None, *, force: bool = False) -> Path:
    """Makes a fresh simulated chain; refuses to replace one unless ``force``.

    The files are written to a private temporary directory beside the target
    and renamed into place, so a chain is never half-written.
    """
    from arx.attestation.snp_sim import SimAmdChain

    directory = directory or sim_dir()
    if chain_exists(directory) and not force:
        raise UsageError(f"a simulated chain already exists in {directory} (use --force)")
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".sim-", dir=directory.parent))
    try:
        for name, data in SimAmdChain.generate().to_pem().items():
            path = staging / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        if directory.exists():
            shutil.rmtree(directory)
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_chain_files(directory: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    try:
        return {name: (directory / name).read_bytes() for name in names}
    except OSError as exc:
        raise BackendError(
            f"no simulated AMD chain in {directory} ({exc.strerror}); run `arx sim init`"
        ) from exc


def load_chain(directory: Path | None = None) -> SimAmdChain:
    """The chain with its private keys (host side only)."""
    from arx.attestation.snp_sim import SimAmdChain

    directory = directory or sim_dir()
    files = read_chain_files(directory, CHAIN_FILES)
    try:
        return SimAmdChain.from_pem(files)
    except (ValueError, KeyError) as exc:
        raise BackendError(f"the simulated chain in {directory} is unreadable: {exc}") from exc


def sign_report(
    report_data: bytes, measurement: bytes, directory: Path | None = None
) -> tuple[bytes, bytes]:
    """A signed v3 report over ``report_data`` and the VCEK (DER) that verifies it.

    Only the VCEK's key is loaded: the RSA-4096 CA keys are not needed to sign
    a report, and loading them costs most of a second.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from arx.attestation.snp import Product, SigningKey, TcbVersion, VekExtensions
    from arx.attestation.snp_sim import SimVek, build_report

    directory = directory or sim_dir()
    files = read_chain_files(directory, ("product", "vcek.pem", "vcek.key"))
    try:
        product = Product(files["product"].decode().strip())
        key = serialization.load_pem_private_key(files["vcek.key"], password=None)
        cert = x509.load_pem_x509_certificate(files["vcek.pem"])
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("vcek.key is not an EC key")
        ext = VekExtensions.from_certificate(cert, SigningKey.VCEK)
    except (ValueError, x509.InvalidVersion) as exc:
        raise BackendError(f"the simulated chain in {directory} is unreadable: {exc}") from exc
    vek = SimVek(SigningKey.VCEK, key, cert, TcbVersion(product, **ext.spl), ext.hwid)
    report = build_report(vek, product=product, report_data=report_data, measurement=measurement)
    return report, cert.public_bytes(serialization.Encoding.DER)


def _measured_files() -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for package in MEASURED_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BackendError(f"cannot find the {package} package to measure")
        root = Path(next(iter(spec.submodule_search_locations)))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
            for filename in sorted(filenames):
                if filename.endswith(_SKIPPED_SUFFIXES):
                    continue
                path = Path(dirpath) / filename
                files.append((f"{package}/{path.relative_to(root).as_posix()}", path))
    files.sort(key=lambda item: item[0])
    return files


def _file_digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha384").digest()


def runtime_measurement(cache_dir: Path | None = None) -> bytes:
    """SHA-384 over (path, SHA-384 of content) of every runtime file, in path order.

    With ``cache_dir``, per-file digests are reused while a file's size,
    modification time and inode are unchanged, so that starting a Keep does
    not re-read the 30 MB wasmtime library each time.
    """
    cache: dict[str, list[object]] = {}
    cache_path = cache_dir / _MEASUREMENT_CACHE if cache_dir else None
    if cache_path is not None:
        with contextlib.suppress(OSError, ValueError):
            cache = json.loads(cache_path.read_text())
    outer = hashlib.sha384(MEASUREMENT_DOMAIN)
    fresh: dict[str, list[object]] = {}
    for name, path in _measured_files():
        st = path.stat()
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = cache.get(name)
        if cached is not None and cached[:3] == key and isinstance(cached[3], str):
            digest = bytes.fromhex(cached[3])
        else:
            digest = _file_digest(path)
        fresh[name] = [*key, digest.hex()]
        encoded = name.encode()
        outer.update(struct.pack(">H", len(encoded)) + encoded + digest)
    if cache_path is not None and fresh != cache:
        with contextlib.suppress(OSError):
            tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(fresh))
            os.replace(tmp, cache_path)
    return outer.digest()
