"""Load: concurrent clients deploying through one keepmgr, bounded in count and time.

The default run uses 10 clients x 4 deployments; ``ARX_LOAD_FULL=1`` (or
``bench/keepmgr.py``) runs the full 50 x 20. Either way every output must
arrive complete with the right exit code, and nothing may be left behind.
"""

from __future__ import annotations

import os
import time

import pytest

from arx.client.api import KeepmgrClient
from tests.conftest import Keepmgr, assert_nothing_left, start_keepmgr
from tests.integration.load import run_load

FULL = os.environ.get("ARX_LOAD_FULL") == "1"
CLIENTS, PER_CLIENT = (50, 20) if FULL else (10, 4)
# The whole load must finish within this; a hang is a failure, not a wait.
LOAD_DEADLINE_S = 900 if FULL else 120


@pytest.mark.slow
@pytest.mark.timeout(LOAD_DEADLINE_S + 60)
def test_concurrent_clients_each_get_their_own_complete_output(tmp_path) -> None:
    mgr: Keepmgr = start_keepmgr(tmp_path)
    try:
        result = run_load(mgr.url, CLIENTS, PER_CLIENT)
        assert result.errors == []
        assert result.deployments == CLIENTS * PER_CLIENT
        assert result.correct == CLIENTS * PER_CLIENT
        assert result.wall_s < LOAD_DEADLINE_S
        # Every Keep is gone or finished: nothing is live once the clients are done.
        deadline = time.monotonic() + 10
        while any(k.state not in ("exited", "failed") for k in KeepmgrClient(mgr.url).list().keeps):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        code = mgr.stop()
    assert_nothing_left(mgr)
    assert code == 0
