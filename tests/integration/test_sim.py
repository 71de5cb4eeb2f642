"""The attested path on the sim backend, through real processes."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLES, WORKLOADS, Keepmgr, arx

HELLO = str(EXAMPLES / "hello" / "hello.wasm")


def deploy_sim(mgr: Keepmgr, *extra: str, workload: str = HELLO):
    # Workload arguments, if any, are in ``extra`` after a "--".
    return arx("deploy", workload, "--host", mgr.url, "--backend", "sim", *extra, env=mgr.env)


def test_untrusted_sim_is_refused_with_how_to_allow_it(keepmgr: Keepmgr) -> None:
    run = deploy_sim(keepmgr)
    assert run.returncode == 125
    line = run.stderr.decode().strip()
    assert "\n" not in line
    assert "protects nothing" in line
    assert "arx trust sim" in line
    listed = arx("keeps", "list", "--host", keepmgr.url, "--json", env=keepmgr.env)
    assert listed.stdout.strip() == b"[]"


def test_trusted_sim_deploys_through_the_verifier(keepmgr: Keepmgr) -> None:
    trusted = arx("trust", "sim", env=keepmgr.env)
    assert trusted.returncode == 0, trusted.stderr
    run = deploy_sim(keepmgr, "-v", "--", "5", "sim", workload=str(WORKLOADS / "exitcode.wasm"))
    assert run.returncode == 5, run.stderr
    assert run.stdout == b"sim\n"
    log = run.stderr.decode()
    assert "verified sim evidence signed by VCEK (Milan)" in log
    removed = arx("trust", "sim", "--remove", env=keepmgr.env)
    assert removed.returncode == 0
    assert deploy_sim(keepmgr).returncode == 125


def test_policy_with_the_expected_measurement(keepmgr: Keepmgr, tmp_path: Path) -> None:
    measured = arx("measure", env=keepmgr.env)
    assert measured.returncode == 0
    measurement = measured.stdout.decode().strip()
    assert len(measurement) == 96
    good = tmp_path / "good.toml"
    good.write_text(
        f'[deploy]\nbackends = ["sim"]\ntrust_sim = true\n[snp]\nmeasurement = ["{measurement}"]\n'
    )
    run = deploy_sim(keepmgr, "--policy", str(good))
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello from a Keep!\n"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[deploy]\ntrust_sim = true\n[snp]\nmeasurement = ["{"00" * 48}"]\n')
    run = deploy_sim(keepmgr, "--policy", str(bad))
    assert run.returncode == 125
    assert b"snp.measurement" in run.stderr
    only_snp = tmp_path / "snp-only.toml"
    only_snp.write_text('[deploy]\nbackends = ["snp"]\n')
    run = deploy_sim(keepmgr, "--policy", str(only_snp))
    assert run.returncode == 125
    assert b"does not accept the sim backend" in run.stderr


def test_policy_file_errors_name_the_key(keepmgr: Keepmgr, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[deploy]\nbackend = ['sim']\n")
    run = deploy_sim(keepmgr, "--policy", str(policy))
    assert run.returncode == 125
    assert "unknown key 'backend'" in run.stderr.decode()


def test_both_hpke_suites_on_sim(keepmgr: Keepmgr) -> None:
    arx("trust", "sim", env=keepmgr.env)
    for suite in ("x25519", "mlkem768-x25519"):
        run = deploy_sim(keepmgr, "--hpke-suite", suite)
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"Hello from a Keep!\n"


def test_platform_info_says_sim_protects_nothing(keepmgr: Keepmgr) -> None:
    run = arx("platform", "info", "--host", keepmgr.url, env=keepmgr.env)
    assert run.returncode == 0
    line = next(x for x in run.stdout.decode().splitlines() if x.strip().startswith("sim"))
    assert "available" in line
    assert "PROTECTS NOTHING" in line
