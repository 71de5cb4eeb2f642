"""The backends a Keep can be created on, each behind one ``Backend`` protocol.

A backend knows how to start the Keep's wasmldr and how to obtain evidence
from its platform. This module is imported by keepmgr (for platform info and
validation) and by keepldr, so it stays free of heavy imports.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Protocol

from arx.errors import BackendError
from arx.protocol.messages import EvidenceReply

# How long a provisioned Keep waits for its client to connect and send the
# workload before it gives up and ends: a Keep nobody uses must not live on.
# keepmgr passes its --provision-timeout instead.
DEFAULT_WORKLOAD_WAIT = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchSpec:
    keep_id: str
    listen_host: str
    max_workload_bytes: int
    parent_pid: int
    # The compile cache, on host storage; None runs without one.
    compile_cache: str | None = None
    # A TCP socket keepldr bound on ``listen_host`` in the host's network,
    # inherited by wasmldr, which listens on it once provisioned. wasmldr
    # itself may then live in a network namespace with no network at all.
    listen_fd: int | None = None
    workload_wait: float = DEFAULT_WORKLOAD_WAIT
    # Whether wasmldr makes the host's mounts read-only in its own mount
    # namespace (arx.wasmldr.readonly); only where it has one.
    read_only_root: bool = False


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line form of a ``LaunchSpec``, which keepldr and wasmldr both take.

    ``_wasmldr_process`` writes these; keeping their declaration in one place
    keeps the writer and the two readers in step.
    """
    parser.add_argument("--backend", required=True)
    parser.add_argument("--keep-id", required=True)
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--max-workload-bytes", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument(
        "--workload-wait",
        type=float,
        default=DEFAULT_WORKLOAD_WAIT,
        metavar="SECONDS",
        help="how long a provisioned Keep waits for its workload before it ends",
    )
    parser.add_argument(
        "--read-only-root",
        action="store_true",
        help="(wasmldr, in its own namespaces) make every host mount read-only but its own",
    )
    parser.add_argument(
        "--listen-fd",
        type=int,
        default=None,
        help="(wasmldr) the bound TCP socket keepldr made for the workload port",
    )
    parser.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help="directory of compiled modules keyed by module digest, wasmtime version and "
        "engine configuration (host storage: see docs/workloads.md for what that trusts)",
    )


class Backend(Protocol):
    name: str
    secure: bool
    description: str
    # What an operator can do when ``available()`` is false.
    unavailable_hint: str

    def available(self) -> bool:
        """Whether this host can create Keeps on this backend now."""
        ...

    def wasmldr_command(self, spec: LaunchSpec) -> list[str]:
        """The command that starts the Keep and wasmldr inside it."""
        ...

    def evidence(self, report_data: bytes) -> EvidenceReply:
        """Evidence from the platform that binds ``report_data`` (keepldr side)."""
        ...


def _wasmldr_process(backend: str, spec: LaunchSpec) -> list[str]:
    return [
        sys.executable,
        "-m",
        "arx.wasmldr.main",
        "--backend",
        backend,
        "--keep-id",
        spec.keep_id,
        "--max-workload-bytes",
        str(spec.max_workload_bytes),
        "--parent-pid",
        str(spec.parent_pid),
        "--workload-wait",
        str(spec.workload_wait),
        *(["--compile-cache", spec.compile_cache] if spec.compile_cache else []),
        *(["--listen-fd", str(spec.listen_fd)] if spec.listen_fd is not None else []),
        *(["--read-only-root"] if spec.read_only_root else []),
    ]


class NilBackend:
    """A Keep that is a plain process: no isolation from the host, no evidence."""

    name = "nil"
    secure = False
    unavailable_hint = ""
    description = (
        "a plain process with no TEE and no evidence: the host can read and alter "
        "everything; for development only"
    )

    def available(self) -> bool:
        return True

    def wasmldr_command(self, spec: LaunchSpec) -> list[str]:
        return _wasmldr_process(self.name, spec)

    def evidence(self, report_data: bytes) -> EvidenceReply:
        # The "none" kind says explicitly that there is nothing to verify;
        # clients refuse it unless their policy allows insecure backends.
        return EvidenceReply(evidence_kind="none", evidence=b"")


class SimBackend:
    """A plain process whose evidence is an SEV-SNP report signed by a simulated chain.

    The simulated chain's private keys are on the host, so the host can forge
    any report: this backend protects nothing. It exists to run the whole
    attested path, with the real report layout and the real verifier, on
    machines without a TEE. See ``arx.sim``.
    """

    name = "sim"
    secure = False
    unavailable_hint = "the host has no simulated AMD chain; run `arx sim init` on it"
    description = (
        "a plain process with SEV-SNP-format evidence signed by a simulated AMD chain "
        "whose keys the host holds: exercises attestation, PROTECTS NOTHING"
    )

    def __init__(self) -> None:
        self._measurement: bytes | None = None

    def available(self) -> bool:
        from arx import sim

        return sim.chain_exists()

    def wasmldr_command(self, spec: LaunchSpec) -> list[str]:
        from arx import sim

        # Measured as launched: the files the Keep's runtime is started from.
        self._measurement = sim.runtime_measurement(sim.sim_dir())
        return _wasmldr_process(self.name, spec)

    def evidence(self, report_data: bytes) -> EvidenceReply:
        from arx import sim

        measurement = self._measurement or sim.runtime_measurement(sim.sim_dir())
        report, vcek = sim.sign_report(report_data, measurement)
        return EvidenceReply(evidence_kind="sim", evidence=report, certificates=(vcek,))


class HardwareBackend:
    """A TEE backend whose device this build cannot drive yet."""

    secure = True

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.unavailable_hint = f"this build cannot drive {name} hardware yet"

    def available(self) -> bool:
        return False

    def wasmldr_command(self, spec: LaunchSpec) -> list[str]:
        raise BackendError(f"the {self.name} backend is not available on this host")

    def evidence(self, report_data: bytes) -> EvidenceReply:
        raise BackendError(f"the {self.name} backend is not available on this host")


BACKENDS: dict[str, Backend] = {
    "nil": NilBackend(),
    "sim": SimBackend(),
    "snp": HardwareBackend("snp", "AMD SEV-SNP confidential VM (needs SNP hardware)"),
    "tdx": HardwareBackend("tdx", "Intel TDX confidential VM (needs TDX hardware)"),
    "sgx": HardwareBackend("sgx", "Intel SGX enclave (needs SGX hardware)"),
}


def get_backend(name: str) -> Backend:
    backend = BACKENDS.get(name)
    if backend is None:
        known = ", ".join(sorted(BACKENDS))
        raise BackendError(f"unknown backend {name!r} (this host knows: {known})")
    if not backend.available():
        hint = f" ({backend.unavailable_hint})" if backend.unavailable_hint else ""
        raise BackendError(f"the {name} backend is not available on this host{hint}")
    return backend
