"""What the client trusts, and step 5: checking a Keep's answer before sealing anything to it.

A ``DeployPolicy`` says which backends are acceptable, whether the simulator's
root is trusted (only ever by explicit choice), and what an SEV-SNP report must
show (``arx.attestation.policy.SnpPolicy``: measurement, TCB minimums, ...).
It is read from the ``[deploy]`` and ``[snp]`` tables of a policy file
(``arx deploy --policy FILE``); without a file, every hardware backend is
acceptable with the baseline SNP policy, ``sim`` only when ``arx trust sim``
has put the simulator's root in the trust store, and ``nil`` only with
``--insecure``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from arx import sim
from arx.attestation.claims import VerifiedEvidence
from arx.attestation.policy import SnpPolicy, parse_snp_table
from arx.attestation.snp import Product, SnpReport, load_certificates
from arx.attestation.snp_verify import AmdTrust, verify_snp
from arx.errors import PolicyRefusal, UsageError, VerificationError
from arx.protocol.messages import BACKEND_NAMES, AttestResponse

# The evidence kind each backend must answer with; anything else is a
# relabelling or a downgrade and is refused before any verification.
EXPECTED_EVIDENCE: Final = {"nil": "none", "sim": "sim", "snp": "snp", "tdx": "tdx", "sgx": "sgx"}
SECURE_BACKENDS: Final = frozenset({"snp", "tdx", "sgx"})
DEPLOY_KEYS: Final = frozenset({"backends", "trust_sim"})


def trust_dir() -> Path:
    explicit = os.environ.get("ARX_TRUST_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "arx" / "trust"


def _anchors_from(directory: Path, name: str) -> AmdTrust:
    files = sim.read_chain_files(directory, sim.PUBLIC_FILES)
    try:
        product = Product(files["product"].decode().strip())
    except ValueError as exc:
        raise UsageError(f"{directory}: unknown product in the simulated chain") from exc
    return AmdTrust.from_pem(
        {product: (files["ark.pem"], files["ask.pem"], files["asvk.pem"])}, name=name
    )


def trusted_sim_anchors() -> AmdTrust | None:
    """The simulator root the user trusted with ``arx trust sim``, if any."""
    directory = trust_dir() / "sim"
    if not (directory / "ark.pem").is_file():
        return None
    return _anchors_from(directory, f"simulator root trusted in {directory}")


def local_sim_anchors() -> AmdTrust:
    """The root of this machine's own simulated chain (``arx sim init``)."""
    return _anchors_from(sim.sim_dir(), f"local simulator root in {sim.sim_dir()}")


def trust_sim(source: Path | None = None) -> Path:
    """Copies a simulated chain's public certificates into the trust store."""
    source = source or sim.sim_dir()
    files = sim.read_chain_files(source, sim.PUBLIC_FILES)
    _anchors_from(source, str(source))  # refuse to trust something unreadable
    target = trust_dir() / "sim"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".sim-", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def untrust_sim() -> bool:
    target = trust_dir() / "sim"
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployPolicy:
    backends: frozenset[str] = SECURE_BACKENDS | {"sim"}
    sim_anchors: AmdTrust | None = None
    snp: SnpPolicy = field(default_factory=SnpPolicy.baseline)

    @classmethod
    def default(cls) -> DeployPolicy:
        return cls(sim_anchors=trusted_sim_anchors())

    @classmethod
    def from_file(cls, path: str | Path) -> DeployPolicy:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read policy file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(document) - {"deploy", "snp"})
        if unknown:
            raise UsageError(f"{path}: unknown table [{unknown[0]}]; expected [deploy], [snp]")
        deploy: dict[str, Any] = document.get("deploy", {})
        if not isinstance(deploy, dict):
            raise UsageError(f"{path}: [deploy] must be a table")
        extra = sorted(set(deploy) - DEPLOY_KEYS)
        if extra:
            raise UsageError(f"{path}: [deploy] has unknown key {extra[0]!r}")
        backends = deploy.get("backends", sorted(SECURE_BACKENDS | {"sim"}))
        if not isinstance(backends, list) or not all(b in BACKEND_NAMES for b in backends):
            raise UsageError(
                f"{path}: [deploy] backends must be a list of {', '.join(BACKEND_NAMES)}"
            )
        trust = deploy.get("trust_sim", False)
        if not isinstance(trust, bool):
            raise UsageError(f"{path}: [deploy] trust_sim must be true or false")
        anchors = trusted_sim_anchors()
        if trust and anchors is None:
            anchors = local_sim_anchors()
        snp = parse_snp_table(document["snp"], str(path)) if "snp" in document else None
        return cls(
            backends=frozenset(backends),
            sim_anchors=anchors if (trust or "sim" in backends) else None,
            snp=snp or SnpPolicy.baseline(),
        )


def check_backend_allowed(backend: str, policy: DeployPolicy, *, allow_insecure: bool) -> None:
    """Refuses unacceptable backends before anything is created (fail early, say why)."""
    if backend not in BACKEND_NAMES:
        raise UsageError(f"unknown backend {backend!r} (arx knows {', '.join(BACKEND_NAMES)})")
    if backend == "nil":
        if not allow_insecure:
            raise PolicyRefusal(
                "backend.insecure",
                "refusing the nil backend: it runs the workload in a plain process with no TEE "
                "and no evidence, so the host can read and alter it; pass --insecure to allow it",
            )
        return
    if backend not in policy.backends:
        allowed = ", ".join(sorted(policy.backends)) or "none"
        raise PolicyRefusal(
            "backend.policy",
            f"the policy does not accept the {backend} backend (it accepts {allowed})",
        )
    if backend == "sim" and policy.sim_anchors is None:
        raise PolicyRefusal(
            "backend.sim.untrusted",
            "refusing the sim backend: its reports are signed by keys the host holds, so it "
            "protects nothing, and its root is not trusted here; run `arx trust sim` (or set "
            "trust_sim = true under [deploy] in a policy file) to allow it",
        )


def verify_answer(
    *,
    backend: str,
    suite: str,
    report_data: bytes,
    answer: AttestResponse,
    policy: DeployPolicy,
    allow_insecure: bool,
    now: datetime,
) -> VerifiedEvidence | None:
    """Step 5. Returns the verified claims (``None`` for ``nil``) or raises.

    ``report_data`` is what the client computed from what it asked for and
    the key it was given; the evidence must carry exactly these 64 bytes.
    """
    if answer.backend != backend:
        raise VerificationError(
            "attestation.backend",
            "the host answered for another backend",
            expected=backend,
            actual=answer.backend,
        )
    if answer.hpke_suite != suite:
        raise VerificationError(
            "attestation.hpke_suite",
            "HPKE suite mismatch",
            expected=suite,
            actual=answer.hpke_suite,
        )
    expected_kind = EXPECTED_EVIDENCE[backend]
    if answer.evidence_kind != expected_kind:
        raise VerificationError(
            "attestation.evidence_kind",
            f"a {backend} Keep must present {expected_kind} evidence",
            expected=expected_kind,
            actual=answer.evidence_kind,
        )
    if expected_kind == "none":
        check_backend_allowed(backend, policy, allow_insecure=allow_insecure)
        return None
    if expected_kind in ("sim", "snp"):
        check_backend_allowed(backend, policy, allow_insecure=allow_insecure)
        anchors = AmdTrust.pinned() if expected_kind == "snp" else policy.sim_anchors
        assert anchors is not None  # check_backend_allowed refused an untrusted sim
        if len(answer.certificates) != 1:
            raise VerificationError(
                "attestation.certificates",
                "SEV-SNP evidence needs exactly one VCEK or VLEK",
                expected="1",
                actual=str(len(answer.certificates)),
            )
        report = SnpReport.from_bytes(answer.evidence)
        veks = load_certificates(answer.certificates[0])
        if len(veks) != 1:
            raise VerificationError(
                "attestation.certificates",
                "the VCEK or VLEK must be one certificate",
                expected="1",
                actual=str(len(veks)),
            )
        return verify_snp(
            report,
            vcek=veks[0],
            anchors=anchors,
            policy=policy.snp,
            now=now,
            expected_report_data=report_data,
        )
    raise PolicyRefusal(
        f"attestation.{expected_kind}",
        f"verifying {expected_kind} evidence from a Keep is not supported by this client yet",
    )
