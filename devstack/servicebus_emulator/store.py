"""Durable state in SQLite: messages (with their locks and delivery counts), sequence numbers,
session state and duplicate-detection history.

WAL mode with synchronous=NORMAL: a commit survives the broker being killed (kill -9), which is the
failure this local emulator has to tolerate; it may not survive the machine losing power.
Every public write method is one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    name TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    entity TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    state INTEGER NOT NULL,
    raw BLOB NOT NULL,
    session_id TEXT,
    enqueued_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    scheduled_ms INTEGER,
    delivery_count INTEGER NOT NULL,
    lock_token BLOB,
    locked_until_ms INTEGER,
    PRIMARY KEY (entity, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_states (
    entity TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    PRIMARY KEY (entity, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duplicate_history (
    entity TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (entity, message_id)
) WITHOUT ROWID;
"""


@dataclass
class StoredRow:
    entity: str
    sequence: int
    state: int
    raw: bytes
    session_id: str | None
    enqueued_ms: int
    expires_ms: int | None
    scheduled_ms: int | None
    delivery_count: int
    lock_token: bytes | None
    locked_until_ms: int | None


@dataclass
class NewMessageRow:
    sequence: int
    state: int
    raw: bytes
    session_id: str | None
    enqueued_ms: int
    expires_ms: int | None
    scheduled_ms: int | None


class Store:
    def __init__(self, data_dir: str | Path) -> None:
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "servicebus.sqlite3", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- loading ------------------------------------------------------------------------------

    def last_sequences(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, last_sequence FROM entities").fetchall())

    def messages(self) -> Iterator[StoredRow]:
        cursor = self._db.execute(
            "SELECT entity, sequence, state, raw, session_id, enqueued_ms, expires_ms, scheduled_ms,"
            " delivery_count, lock_token, locked_until_ms FROM messages ORDER BY entity, sequence"
        )
        for row in cursor:
            yield StoredRow(*row)

    def session_states(self) -> Iterator[tuple[str, str, bytes | None]]:
        yield from self._db.execute("SELECT entity, session_id, state FROM session_states")

    def duplicate_history(self) -> Iterator[tuple[str, str, int]]:
        yield from self._db.execute("SELECT entity, message_id, seen_ms FROM duplicate_history")

    # --- writes (one transaction each) ----------------------------------------------------------

    def add_messages(
        self,
        entity: str,
        rows: list[NewMessageRow],
        last_sequence: int,
        seen_ids: Iterable[tuple[str, int]] = (),
        removed: Iterable[tuple[str, int]] = (),
    ) -> None:
        """Enqueue messages, advance the entity's sequence counter, record ids for duplicate detection,
        and delete messages (entity, sequence) that this enqueue replaces (dead-lettering moves)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO messages (entity, sequence, state, raw, session_id, enqueued_ms, expires_ms,"
                " scheduled_ms, delivery_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [
                    (entity, r.sequence, r.state, r.raw, r.session_id, r.enqueued_ms, r.expires_ms, r.scheduled_ms)
                    for r in rows
                ],
            )
            self._db.execute(
                "INSERT INTO entities (name, last_sequence) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET last_sequence = excluded.last_sequence",
                (entity, last_sequence),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO duplicate_history (entity, message_id, seen_ms) VALUES (?, ?, ?)",
                [(entity, message_id, seen_ms) for message_id, seen_ms in seen_ids],
            )
            self._db.executemany("DELETE FROM messages WHERE entity = ? AND sequence = ?", list(removed))

    def advance_sequence(self, entity: str, last_sequence: int) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO entities (name, last_sequence) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET last_sequence = excluded.last_sequence",
                (entity, last_sequence),
            )

    def lock(self, entity: str, sequence: int, delivery_count: int, token: bytes, locked_until_ms: int) -> None:
        self._db.execute(
            "UPDATE messages SET delivery_count = ?, lock_token = ?, locked_until_ms = ?"
            " WHERE entity = ? AND sequence = ?",
            (delivery_count, token, locked_until_ms, entity, sequence),
        )

    def renew(self, entity: str, sequence: int, locked_until_ms: int) -> None:
        self._db.execute(
            "UPDATE messages SET locked_until_ms = ? WHERE entity = ? AND sequence = ?",
            (locked_until_ms, entity, sequence),
        )

    def unlock(self, entity: str, sequence: int, state: int, delivery_count: int) -> None:
        self._db.execute(
            "UPDATE messages SET state = ?, delivery_count = ?, lock_token = NULL, locked_until_ms = NULL"
            " WHERE entity = ? AND sequence = ?",
            (state, delivery_count, entity, sequence),
        )

    def set_state(self, entity: str, sequence: int, state: int) -> None:
        self._db.execute("UPDATE messages SET state = ? WHERE entity = ? AND sequence = ?", (state, entity, sequence))

    def delete(self, entity: str, sequences: Iterable[int]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM messages WHERE entity = ? AND sequence = ?", [(entity, s) for s in sequences]
            )

    def set_session_state(self, entity: str, session_id: str, state: bytes | None) -> None:
        if state is None:
            self._db.execute(
                "DELETE FROM session_states WHERE entity = ? AND session_id = ?", (entity, session_id)
            )
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO session_states (entity, session_id, state) VALUES (?, ?, ?)",
                (entity, session_id, state),
            )

    def forget_duplicates(self, entity: str, older_than_ms: int) -> None:
        self._db.execute(
            "DELETE FROM duplicate_history WHERE entity = ? AND seen_ms < ?", (entity, older_than_ms)
        )
