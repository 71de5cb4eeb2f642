"""Attestation evidence: parsers, verifiers and policies.

Every evidence kind goes through two stages whose types differ: parsing
(``from_bytes``) checks structure only and returns a frozen dataclass;
verification takes the parsed evidence, the collateral, the trust anchors, the
policy and the time ``now`` as inputs and returns a ``VerifiedEvidence`` or
raises an ``arx.errors.AttestationError``. Verification never does I/O.
"""
