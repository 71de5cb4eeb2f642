"""wasmldr's drop of every privilege, run in a child process (it cannot be undone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arx.keepmgr.confine import NAMESPACE_FLAGS

CHILD = """
import json, os, sys
from arx.wasmldr.privileges import drop_all
drop_all()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
report = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                         "NoNewPrivs")}
try:
    open(sys.argv[1]).read()
    report["read_other_users_file"] = "yes"
except OSError as exc:
    report["read_other_users_file"] = exc.strerror
print(json.dumps(report))
"""


def run_child(prefix: list[str], secret: Path) -> dict[str, str]:
    import json

    done = subprocess.run(
        [*prefix, sys.executable, "-c", CHILD, str(secret)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file only another user may read; root reads it through CAP_DAC_OVERRIDE."""
    path = tmp_path / "secret"
    path.write_text("not yours")
    path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    tmp_path.chmod(0o755)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="shows what root gives up")
def test_root_gives_up_every_capability(secret: Path) -> None:
    report = run_child([], secret)
    assert report == {
        "CapInh": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
        # Before the drop, root reads any file; after it, only by the file's mode.
        "read_other_users_file": "Permission denied",
    }


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_root_of_a_user_namespace_gives_up_its_capabilities_there(secret: Path) -> None:
    try:
        report = run_child(["unshare", *NAMESPACE_FLAGS, "--"], secret)
    except subprocess.CalledProcessError as exc:
        if b"unshare failed" in exc.stderr:
            pytest.skip(f"no user namespaces here: {exc.stderr.decode().strip()}")
        raise
    assert report["CapEff"] == report["CapPrm"] == report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1"
