"""A malicious host for the attack tests: a proxy in front of a real keepmgr.

It forwards the keepmgr API to the real keepmgr and, depending on ``--attack``,
tampers with what passes through. It holds the simulated chain's private keys
(a host running sim Keeps has them), so it can re-sign reports. It always
points the client's workload connection at its own TLS server, which counts
every byte it receives; on SIGTERM it writes that count to ``--report`` so the
test can assert that no workload byte reached the attacker.

    python tests/malicious_host.py --upstream URL --attack NAME --report FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from arx import crypto, sim
from arx.attestation.snp import SnpReport
from arx.attestation.snp_sim import sign_report
from arx.protocol import cbor

ATTACKS = (
    "none",
    "swap_hpke_key",
    "replay_evidence",
    "other_keep_evidence",
    "relabel_sim_as_snp",
    "downgrade_to_nil",
    "tamper_sealed_key",
    "redirect_tls",
    "truncate_evidence",
    "pad_evidence",
    "debug_policy",
    "wrong_measurement",
)
CBOR = "application/cbor"
POLICY_OFFSET = 0x08
MEASUREMENT_OFFSET = 0x90
DEBUG_BIT = 19


class Attacker:
    def __init__(self, upstream: str, attack: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.attack = attack
        self.session: aiohttp.ClientSession | None = None
        self.tls_port = 0
        self.workload_bytes = 0
        self.tls_connections = 0
        # keep id the client knows -> keep id the attacker really uses
        self.substitute: dict[str, str] = {}
        self.spare_answers: dict[str, dict[str, Any]] = {}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        data = None if body is None else cbor.encode(body)
        headers = {"Content-Type": CBOR} if data is not None else {}
        async with self.session.request(
            method, self.upstream + path, data=data, headers=headers
        ) as response:
            raw = await response.read()
            return response.status, cbor.decode(raw) if raw else None

    # -- the API, tampered with -----------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = cbor.decode(await request.read())
        asked = body["backend"]
        if self.attack == "relabel_sim_as_snp" and asked == "snp":
            body["backend"] = "sim"
        if self.attack == "downgrade_to_nil":
            body["backend"] = "nil"
        status, answer = await self.call("POST", "/v1/keeps", body)
        if status < 300:
            answer["backend"] = asked
            if self.attack == "replay_evidence":
                # Attest the Keep once itself, to replay that answer later.
                _, old = await self.call(
                    "POST",
                    f"/v1/keeps/{answer['id']}/attest",
                    {"nonce": secrets.token_bytes(32), "hpke_suite": "x25519"},
                )
                self.spare_answers[answer["id"]] = old
            if self.attack == "other_keep_evidence":
                _, other = await self.call("POST", "/v1/keeps", {"backend": body["backend"]})
                self.substitute[answer["id"]] = other["id"]
        return self.respond(status, answer)

    async def attest(self, request: web.Request) -> web.Response:
        keep_id = request.match_info["id"]
        body = cbor.decode(await request.read())
        target = self.substitute.get(keep_id, keep_id)
        status, answer = await self.call("POST", f"/v1/keeps/{target}/attest", body)
        if status >= 300:
            return self.respond(status, answer)
        if self.attack == "swap_hpke_key":
            answer["hpke_public_key"] = crypto.KeepKeys.generate().public_key(body["hpke_suite"])
        elif self.attack == "replay_evidence":
            answer = self.spare_answers[keep_id]
        elif self.attack == "relabel_sim_as_snp":
            answer["backend"] = "snp"
            answer["evidence_kind"] = "snp"
        elif self.attack == "downgrade_to_nil":
            answer["backend"] = "sim"
        elif self.attack == "truncate_evidence":
            answer["evidence"] = answer["evidence"][:-1]
        elif self.attack == "pad_evidence":
            answer["evidence"] = answer["evidence"] + bytes(16)
        elif self.attack in ("debug_policy", "wrong_measurement"):
            answer["evidence"] = self.resign(answer["evidence"])
        return self.respond(status, answer)

    def resign(self, evidence: bytes) -> bytes:
        report = bytearray(evidence)
        if self.attack == "debug_policy":
            policy = int.from_bytes(report[POLICY_OFFSET : POLICY_OFFSET + 8], "little")
            policy |= 1 << DEBUG_BIT
            report[POLICY_OFFSET : POLICY_OFFSET + 8] = policy.to_bytes(8, "little")
        else:
            report[MEASUREMENT_OFFSET : MEASUREMENT_OFFSET + 48] = bytes(48)
        SnpReport.from_bytes(bytes(report))  # still a well-formed report
        return sign_report(report, sim.load_chain().vcek.key)

    async def provision(self, request: web.Request) -> web.Response:
        keep_id = request.match_info["id"]
        body = cbor.decode(await request.read())
        if self.attack == "tamper_sealed_key":
            sealed = bytearray(body["sealed_key"])
            sealed[len(sealed) // 2] ^= 0x01
            body["sealed_key"] = bytes(sealed)
        status, answer = await self.call("POST", f"/v1/keeps/{keep_id}/provision", body)
        if status < 300 and self.attack == "redirect_tls":
            answer["workload_port"] = self.tls_port
        return self.respond(status, answer)

    async def passthrough(self, request: web.Request) -> web.Response:
        status, answer = await self.call(request.method, request.path)
        return self.respond(status, answer)

    @staticmethod
    def respond(status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=cbor.encode(body), content_type=CBOR)

    # -- the attacker's own TLS server ---------------------------------------------

    async def serve_tls(self) -> asyncio.Server:
        key, _der = crypto.make_tls_key()
        cert = crypto.self_signed_certificate(key, "attacker")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(suffix=".pem") as f:
            f.write(cert + pem)
            f.flush()
            context.load_cert_chain(f.name)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.tls_connections += 1
            try:
                while data := await reader.read(65536):
                    self.workload_bytes += len(data)
            except (OSError, ssl.SSLError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        self.tls_port = server.sockets[0].getsockname()[1]
        return server


async def main_async(args: argparse.Namespace) -> None:
    attacker = Attacker(args.upstream, args.attack)
    attacker.session = aiohttp.ClientSession()
    tls = await attacker.serve_tls()
    app = web.Application()
    app.router.add_post("/v1/keeps", attacker.create)
    app.router.add_post("/v1/keeps/{id}/attest", attacker.attest)
    app.router.add_post("/v1/keeps/{id}/provision", attacker.provision)
    app.router.add_route("*", "/{tail:.*}", attacker.passthrough)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"malicious host listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    tls.close()
    await runner.cleanup()
    await attacker.session.close()
    Path(args.report).write_text(
        json.dumps(
            {
                "workload_bytes": attacker.workload_bytes,
                "tls_connections": attacker.tls_connections,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--attack", required=True, choices=ATTACKS)
    parser.add_argument("--report", required=True)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
