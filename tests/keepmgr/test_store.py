"""keepmgr's state database: schema, tokens, Keep records, refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arx.errors import StateError, UsageError
from arx.keepmgr.store import DB_NAME, SCHEMA_VERSION, Store, split_token
from arx.protocol.messages import KeepExit, KeepInfo

KEEP = "k-" + "ab" * 16


def test_fresh_state_is_migrated_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert (tmp_path / DB_NAME).stat().st_mode & 0o777 == 0o600
    # Opening again neither migrates nor loses anything.
    store = Store.open(tmp_path)
    store.create_token("a", "client")
    store.close()
    store = Store.open(tmp_path)
    assert [t.name for t in store.tokens()] == ["a"]
    store.close()


def test_tokens_authenticate_until_revoked(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    row, token = store.create_token("alice", "client")
    assert store.authenticate(token) == row
    token_id, secret = split_token(token) or ("", "")
    assert token_id == row.id
    wrong = f"arx_{token_id}_{'A' * len(secret)}"
    for bad in (wrong, token + "x", token[:-1], "", "Bearer", "arx__x", f"arx_{'0' * 16}_{secret}"):
        assert store.authenticate(bad) is None, bad
    assert store.revoke_token(row.id)
    assert not store.revoke_token(row.id)
    assert store.authenticate(token) is None
    assert store.tokens()[0].revoked_at is not None
    with pytest.raises(UsageError):
        store.create_token("", "client")
    store.close()


def test_keep_records_round_trip(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    info = KeepInfo(id=KEEP, backend="nil", state="ready", created_at=1, workload_port=None)
    store.save_keep(info, "owner1", 1234)
    done = KeepInfo(id=KEEP, backend="nil", state="exited", created_at=1, workload_port=4000,
                    exit=KeepExit(status="exited", code=3))  # fmt: skip
    store.save_keep(done, "owner1", None)
    (row,) = store.keeps()
    assert row.info == done
    assert row.owner == "owner1"
    assert row.pid is None
    store.delete_keep(KEEP)
    assert store.keeps() == []
    store.close()


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda p: p.write_bytes(b"garbage" * 1000), "corrupt"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.commit(),
            "not keepmgr's",
        ),
        (
            lambda p: sqlite3.connect(p).execute("PRAGMA user_version = 7").connection.commit(),
            "newer",
        ),
    ],
    ids=["garbage", "foreign", "newer"],
)
def test_unusable_state_is_refused_and_left_alone(tmp_path: Path, setup, words: str) -> None:
    path = tmp_path / DB_NAME
    setup(path)
    before = path.read_bytes()
    with pytest.raises(StateError) as refused:
        Store.open(tmp_path)
    assert words in refused.value.message
    assert str(path) in refused.value.message
    assert path.read_bytes() == before
