"""Property: evidence is accepted only for the session it was made for.

An adversarial host holds genuine answers from several Keeps and sessions
(each a real simulated SEV-SNP report over its own REPORT_DATA) and answers a
client's session with any of them, optionally altered: another Keep's key,
another backend label, another suite, a flipped byte. The client's check
(``verify_answer``) must accept exactly the untouched answer of its own session.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from arx import crypto
from arx.attestation.policy import SnpPolicy
from arx.attestation.snp_sim import SimAmdChain
from arx.client.trust import DeployPolicy, verify_answer
from arx.errors import AttestationError
from arx.protocol.messages import AttestResponse

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MEASUREMENT = bytes(range(48))
SESSIONS = 4


@dataclass(frozen=True)
class Session:
    keep_id: str
    nonce: bytes
    report_data: bytes
    answer: AttestResponse


@functools.cache
def world() -> tuple[DeployPolicy, tuple[Session, ...]]:
    chain = SimAmdChain.generate()
    vcek = chain.vcek.cert.public_bytes(serialization.Encoding.DER)
    sessions = []
    for _ in range(SESSIONS):
        keep_id = "k-" + secrets.token_hex(16)
        keys = crypto.KeepKeys.generate()
        nonce = secrets.token_bytes(32)
        public = keys.public_key("x25519")
        rd = crypto.report_data(
            backend="sim", keep_id=keep_id, nonce=nonce, suite="x25519", public_key=public
        )
        report = chain.build_report(report_data=rd, measurement=MEASUREMENT)
        answer = AttestResponse(
            backend="sim", hpke_suite="x25519", hpke_public_key=public,
            evidence_kind="sim", evidence=report, certificates=(vcek,),
        )  # fmt: skip
        sessions.append(Session(keep_id, nonce, rd, answer))
    policy = DeployPolicy(
        backends=frozenset({"sim"}),
        sim_anchors=chain.trust(),
        snp=SnpPolicy.baseline().with_changes(measurement=frozenset({MEASUREMENT})),
    )
    return policy, tuple(sessions)


MUTATIONS = ("none", "other_key", "backend_snp", "suite", "flip_evidence", "drop_cert")


@settings(max_examples=300, deadline=None)
@given(
    target=st.integers(0, SESSIONS - 1),
    source=st.integers(0, SESSIONS - 1),
    mutation=st.sampled_from(MUTATIONS),
    other=st.integers(0, SESSIONS - 1),
    position=st.integers(0, 1183),
)
def test_only_the_untouched_answer_of_the_session_is_accepted(
    target: int, source: int, mutation: str, other: int, position: int
) -> None:
    policy, sessions = world()
    session = sessions[target]
    answer = sessions[source].answer
    if mutation == "other_key":
        answer = replace(answer, hpke_public_key=sessions[other].answer.hpke_public_key)
    elif mutation == "backend_snp":
        answer = replace(answer, backend="snp", evidence_kind="snp")
    elif mutation == "suite":
        answer = replace(answer, hpke_suite="mlkem768-x25519")
    elif mutation == "flip_evidence":
        evidence = bytearray(answer.evidence)
        evidence[position] ^= 0x01
        answer = replace(answer, evidence=bytes(evidence))
    elif mutation == "drop_cert":
        answer = replace(answer, certificates=())
    # The client recomputes the binding from its own session and the key it was given.
    rd = crypto.report_data(
        backend="sim", keep_id=session.keep_id, nonce=session.nonce, suite="x25519",
        public_key=answer.hpke_public_key,
    )  # fmt: skip
    genuine = source == target and (
        mutation == "none" or (mutation == "other_key" and other == target)
    )
    call = functools.partial(
        verify_answer, backend="sim", suite="x25519", report_data=rd, answer=answer,
        policy=policy, allow_insecure=False, now=NOW,
    )  # fmt: skip
    if genuine:
        claims = call()
        assert claims is not None
        assert claims.report_data == session.report_data
    else:
        with pytest.raises(AttestationError):
            call()
