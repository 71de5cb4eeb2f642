"""keepmgr's durable state: one SQLite database in the state directory.

It records every Keep (so that a restarted keepmgr forgets none) and the
API tokens the operator issued (only their SHA-256 hashes). The schema is
versioned with ``PRAGMA user_version`` and moved forward by ``MIGRATIONS``;
a database from a newer arx, or one that is not an arx database or is
corrupt, is refused with one clear message and left untouched, never
discarded or rebuilt.

WAL mode lets ``arx keepmgr token ...`` write while keepmgr runs. Writes are
small and happen on keepmgr's event loop; they take well under a
millisecond, which is cheaper than handing them to a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arx.errors import StateError, UsageError
from arx.protocol.messages import ExitStatus, KeepExit, KeepInfo, KeepStateName

DB_NAME = "keepmgr.sqlite3"
# How long a writer waits for another (the token command) to finish.
BUSY_TIMEOUT_MS = 5000
# Migration i moves the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE keeps (
        id TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        workload_port INTEGER,
        exit_status TEXT,
        exit_code INTEGER,
        exit_message TEXT NOT NULL DEFAULT '',
        pid INTEGER
    );
    CREATE INDEX keeps_by_owner ON keeps (owner);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('client', 'operator')),
        hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Tokens are "arx_<id>_<secret>": the id finds the row, the secret (256
# random bits) is compared by hash in constant time.
TOKEN_PREFIX = "arx_"  # noqa: S105 (a format marker, not a secret)
TOKEN_ID_BYTES = 8
TOKEN_SECRET_BYTES = 32
MAX_TOKEN_NAME = 64
Role = Literal["client", "operator"]


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    name: str
    role: Role
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class KeepRow:
    info: KeepInfo
    owner: str
    pid: int | None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(token_id) != 2 * TOKEN_ID_BYTES or not secret:
        return None
    return token_id, secret


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: Path, *, create: bool = True) -> Store:
        path = state_dir / DB_NAME
        if not create and not path.exists():
            raise StateError(f"no keepmgr state at {path}")
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open keepmgr state {path}: {exc}") from exc
        try:
            os.chmod(path, 0o600)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"keepmgr state {path} has schema version {version}, newer than this "
                    f"arx understands ({SCHEMA_VERSION}); refusing to touch it"
                )
            if version > 0:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if not {"keeps", "tokens"} <= tables:
                    raise StateError(f"keepmgr state {path} lacks its tables; it is not usable")
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise StateError(f"keepmgr state {path} is corrupt: {check}")
            elif conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StateError(f"{path} is a database, but not keepmgr's; refusing to use it")
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise StateError(f"cannot put keepmgr state {path} in WAL mode")
            # NORMAL is durable across keepmgr crashes in WAL mode; only a
            # power loss may lose the last transactions.
            conn.execute("PRAGMA synchronous = NORMAL")
            for step in range(version, SCHEMA_VERSION):
                migration = MIGRATIONS[step]
                conn.executescript(
                    f"BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {step + 1}; COMMIT;"
                )
        except StateError:
            conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise StateError(
                f"keepmgr state {path} is unreadable or corrupt ({exc}); it was left as it "
                "is: move it aside to start with no state"
            ) from exc
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise StateError(
                    f"cannot record keepmgr state: the state directory is full ({self.path})"
                ) from exc
            raise StateError(f"cannot record keepmgr state in {self.path}: {exc}") from exc

    # -- Keeps ---------------------------------------------------------------

    def save_keep(self, info: KeepInfo, owner: str, pid: int | None) -> None:
        exit_ = info.exit
        self._write(
            "INSERT INTO keeps (id, backend, owner, state, created_at, updated_at, "
            "workload_port, exit_status, exit_code, exit_message, pid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, updated_at = excluded.updated_at, "
            "workload_port = excluded.workload_port, exit_status = excluded.exit_status, "
            "exit_code = excluded.exit_code, exit_message = excluded.exit_message, "
            "pid = excluded.pid",
            (
                info.id,
                info.backend,
                owner,
                info.state,
                info.created_at,
                time.time(),
                info.workload_port,
                exit_.status if exit_ else None,
                exit_.code if exit_ else None,
                exit_.message if exit_ else "",
                pid,
            ),
        )

    def delete_keep(self, keep_id: str) -> None:
        self._write("DELETE FROM keeps WHERE id = ?", (keep_id,))

    def keeps(self) -> list[KeepRow]:
        try:
            rows = self._conn.execute(
                "SELECT id, backend, owner, state, created_at, workload_port, exit_status, "
                "exit_code, exit_message, pid FROM keeps ORDER BY created_at, id"
            ).fetchall()
            result = []
            for kid, backend, owner, state, created, port, status, code, message, pid in rows:
                state_name: KeepStateName = state
                exit_status: ExitStatus | None = status
                exit_ = (
                    None
                    if exit_status is None
                    else KeepExit(status=exit_status, code=code, message=message)
                )
                info = KeepInfo(
                    id=kid,
                    backend=backend,
                    state=state_name,
                    created_at=created,
                    workload_port=port,
                    exit=exit_,
                )
                result.append(KeepRow(info=info, owner=owner, pid=pid))
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateError(f"keepmgr state {self.path} holds an unreadable Keep: {exc}") from exc
        return result

    # -- tokens --------------------------------------------------------------

    def create_token(self, name: str, role: Role) -> tuple[TokenRow, str]:
        if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
            raise UsageError(f"a token name is 1 to {MAX_TOKEN_NAME} printable characters")
        token_id = secrets.token_hex(TOKEN_ID_BYTES)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_SECRET_BYTES)).decode()
        secret = secret.rstrip("=")
        row = TokenRow(token_id, name, role, int(time.time()), None)
        self._write(
            "INSERT INTO tokens (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_id, name, role, _hash(secret), row.created_at),
        )
        return row, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def tokens(self) -> list[TokenRow]:
        rows = self._conn.execute(
            "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at, id"
        ).fetchall()
        return [TokenRow(*r) for r in rows]

    def has_tokens(self) -> bool:
        return bool(self._conn.execute("SELECT 1 FROM tokens LIMIT 1").fetchone())

    def revoke_token(self, token_id: str) -> bool:
        before = self._conn.total_changes
        self._write(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (int(time.time()), token_id),
        )
        return self._conn.total_changes > before

    def authenticate(self, token: str) -> TokenRow | None:
        """The live token row ``token`` proves, or None. Compares hashes in constant time."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        try:
            row = self._conn.execute(
                "SELECT id, name, role, created_at, revoked_at, hash FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read keepmgr tokens: {exc}") from exc
        # Hash even when there is no row, so that timing does not tell ids apart.
        expected = row[5] if row else b"\0" * 32
        if not hmac.compare_digest(_hash(secret), expected) or row is None or row[4] is not None:
            return None
        return TokenRow(*row[:5])
