"""The store's SQLite file: its schema, one connection per thread, write transactions, and the few row helpers every
part of the store uses. SQLite in WAL mode with full sync: a state recorded survives a crash or a power cut."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from evaluator.serve.records import Fault, Limits, State, StoreError, Submission, Team, utc_text

SCHEMA_VERSION = 1

# A submission uses its team's quota once it reached the queue, unless it was cancelled or our machine failed it.
COUNTING = "(state IN ('queued', 'scoring', 'scored') OR (state = 'failed' AND fault = 'team'))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS teams (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_sha256 TEXT NOT NULL UNIQUE,
    added_utc TEXT NOT NULL, revoked_utc TEXT, organiser INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, path TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, fault TEXT, log_tail TEXT,
    queued_utc TEXT, queued_day TEXT, worker_id TEXT, lease_until REAL, lease_expiries INTEGER NOT NULL DEFAULT 0,
    result_folder TEXT, duplicate_of INTEGER REFERENCES submissions(id), chosen INTEGER NOT NULL DEFAULT 0,
    UNIQUE (team_id, sha256));
CREATE INDEX IF NOT EXISTS submissions_by_state ON submissions (state, queued_utc, id);
CREATE TABLE IF NOT EXISTS history (
    submission_id INTEGER NOT NULL REFERENCES submissions(id), state TEXT NOT NULL, utc TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS results (
    model_sha256 TEXT NOT NULL, settings_fingerprint TEXT NOT NULL, submission_id INTEGER NOT NULL,
    folder TEXT NOT NULL, recorded_utc TEXT NOT NULL, PRIMARY KEY (model_sha256, settings_fingerprint));
CREATE TABLE IF NOT EXISTS events (
    submission_id INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, utc TEXT NOT NULL, event TEXT NOT NULL);
"""


class Database:
    """The competition's database at ``db_path``. ``clock`` gives the time (seconds since the epoch): tests move it."""

    def __init__(self, db_path: Path, limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.db_path, self.limits, self.clock = Path(db_path), limits or Limits(), clock
        self._local = threading.local()
        self._db().executescript(SCHEMA)  # idempotent, each statement atomic
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # --- connections and transactions ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=True)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # a scored state survives a power cut too
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): whole or not at all."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """This thread's connection closed (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def now_utc(self) -> str:
        return utc_text(self.clock())

    def _enter(self, db: sqlite3.Connection, submission_id: int, state: State, detail: str = "") -> None:
        db.execute("UPDATE submissions SET state = ? WHERE id = ?", (state, submission_id))
        db.execute("INSERT INTO history VALUES (?, ?, ?, ?)", (submission_id, state, self.now_utc(), detail))

    def _failed(self, db: sqlite3.Connection, submission_id: int, reason: str, fault: Fault,
                log_tail: str | None = None) -> Submission:
        db.execute("UPDATE submissions SET reason = ?, fault = ?, log_tail = ?, worker_id = NULL, lease_until = NULL "
                   "WHERE id = ?", (reason, fault, log_tail, submission_id))
        self._enter(db, submission_id, "failed", reason)
        return self._submission(db, submission_id)

    def _submission(self, db: sqlite3.Connection, submission_id: int) -> Submission:
        row = db.execute("SELECT s.*, t.name AS team FROM submissions s JOIN teams t ON t.id = s.team_id "
                         "WHERE s.id = ?", (submission_id,)).fetchone()
        if row is None:
            raise StoreError(f"no submission {submission_id}")
        timeline = [(state, utc) for state, utc in db.execute(
            "SELECT state, utc FROM history WHERE submission_id = ? ORDER BY rowid", (submission_id,))]
        return Submission(row["id"], row["team"], row["sha256"], row["size"], Path(row["path"]), row["state"],
                          latest_times(timeline), row["reason"], row["fault"], row["log_tail"], row["result_folder"],
                          row["duplicate_of"], row["lease_expiries"], row["worker_id"], bool(row["chosen"]),
                          tuple(timeline))

    def _meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def latest_times(timeline: list[tuple[str, str]]) -> dict[str, str]:
    """Each state's latest time, in the order those latest entries happened (a retry's earlier "failed" comes
    before the "queued" and "scoring" that followed it, not after)."""
    times: dict[str, str] = {}
    for state, utc in timeline:
        times.pop(state, None)
        times[state] = utc
    return times


def row_team(row: sqlite3.Row) -> Team:
    return Team(row["id"], row["name"], row["added_utc"], row["revoked_utc"], bool(row["organiser"]))
