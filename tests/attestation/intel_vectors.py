"""Real Intel quotes and collateral from tests/vectors, with the times at which they are valid.

Shared by the test_tdx*/test_sgx*/test_intel* modules. Each ``now`` lies inside every
validity window of the collateral it goes with (TCB Info, QE Identity, both CRLs and all
certificates), as upstream tests do; the vectors' collateral has long expired otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

# Inside 2025-06-19T10:32:27Z..2025-07-19T10:00:35Z (dcap-qvl tdx/sgx collateral).
NOW_2025 = datetime(2025, 7, 1, tzinfo=UTC)
# Inside 2026-02-18T10:58:51Z..2026-03-03T14:49:26Z (90C06F000000 collateral and the PCS
# TCB Info response from go-tdx-guest).
NOW_2026 = datetime(2026, 2, 25, tzinfo=UTC)

ANY_TDX = {
    k: "any" for k in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner", "xfam")
} | {"report_data": "any"}
ANY_SGX: dict[str, object] = {
    "mrenclave": "any",
    "mrsigner": "any",
    "report_data": "any",
    "isvprodid": "any",
    "min_isvsvn": "any",
}


def read(rel: str) -> bytes:
    return (VECTORS / rel).read_bytes()


def read_hex(rel: str) -> bytes:
    return bytes.fromhex((VECTORS / rel).read_text().strip().removeprefix("0x"))


def tdx_collateral() -> bytes:
    return read("tdx/dcap-qvl/tdx_quote_collateral.json")


def tdx_outdated_collateral() -> bytes:
    return read("tdx/dcap-qvl/tdx_quote_outdated_collateral.json")


def sgx_collateral() -> bytes:
    return read("sgx/dcap-qvl/sgx_quote_collateral.json")


def pcs_form_collateral(*, nested: bool = False) -> bytes:
    """The 90C06F000000 bundle with its TCB Info replaced by the Intel PCS response body
    from go-tdx-guest (sample_tcbinfo_response_v5), signature taken from the response."""
    bundle = json.loads(tdx_outdated_collateral())
    del bundle["tcb_info_signature"]
    pcs_text = read("tdx/go-tdx-guest/sample_tcbinfo_response_v5").decode()
    if not nested:
        bundle["tcb_info"] = pcs_text
        return json.dumps(bundle).encode()
    # The response embedded as a JSON object, its text kept byte for byte.
    bundle["tcb_info"] = "__PCS__"
    return json.dumps(bundle).replace('"__PCS__"', pcs_text.strip()).encode()


def policy(kind: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = dict(ANY_TDX if kind == "tdx" else ANY_SGX)
    base.update(overrides)
    return base
