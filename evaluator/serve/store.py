"""The competition's database: teams and their hashed tokens, submissions and their states, quotas, the leased
queue, results recorded once, progress events and the measurement-window flag.

SQLite in WAL mode in the competition's folder; one connection per thread (each process opens its own), every
write one ``BEGIN IMMEDIATE`` transaction, so two workers never claim the same submission and a crash leaves
every row as it was before or after a change, never between. Every state a submission passes through is kept
with its UTC time (``history``); nothing is deleted.

States: ``received -> checked -> queued -> scoring -> scored | failed | cancelled``. A ``failed`` submission carries
a reason a team can act on and whose fault it was: only the team's own faults use its quota (see ``COUNTING``).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sqlite3
from pathlib import Path

from evaluator.errors import UsageError
from evaluator.events import Event, event_json, parse_event
from evaluator.serve.database import COUNTING, Database, row_team
from evaluator.serve.records import (
    LOG_TAIL_LINES,
    STATES,
    TEAM_NAME,
    Fault,
    Limits,
    Progress,
    Quota,
    State,
    StoreError,
    Submission,
    Team,
    hash_token,
    new_token,
    received_again,
    stopped_detail,
    summarise,
    tail,
)

__all__ = ["LOG_TAIL_LINES", "STATES", "Fault", "Limits", "Progress", "Quota", "State", "Store", "StoreError",
           "Submission", "Team", "hash_token", "tail"]


class Store(Database):
    """The competition's store: teams, submissions, the leased queue, results, progress and the window flag."""

    # --- teams and tokens ---------------------------------------------------------------------------------

    def add_team(self, name: str) -> str:
        """A new team; returns its token, the only time it exists in clear (only its sha256 is stored)."""
        if not TEAM_NAME.fullmatch(name):
            raise UsageError(f"team name {name!r}: use 1 to 40 letters, digits, '-', '_' or '.', starting with a "
                             "letter or digit")
        token = new_token()
        with self._write() as db:
            if db.execute("SELECT 1 FROM teams WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"team {name!r} exists already; choose another name (edl team list)")
            db.execute("INSERT INTO teams (name, token_sha256, added_utc) VALUES (?, ?, ?)",
                       (name, hash_token(token), self.now_utc()))
        return token

    def set_organiser_token(self) -> str:
        """A new organiser token (an earlier one stops working); returned once, stored as its hash."""
        token = new_token()
        with self._write() as db:
            db.execute("DELETE FROM teams WHERE organiser = 1 AND id NOT IN (SELECT team_id FROM submissions)")
            db.execute("UPDATE teams SET revoked_utc = ? WHERE organiser = 1", (self.now_utc(),))
            db.execute("INSERT INTO teams (name, token_sha256, added_utc, organiser) VALUES (?, ?, ?, 1)",
                       (f"(organiser {secrets.token_hex(4)})", hash_token(token), self.now_utc()))
        return token

    def team_by_token(self, token: str) -> Team | None:
        """The team (or organiser) the token belongs to, None when unknown or revoked."""
        digest = hash_token(token)
        row = self._db().execute("SELECT * FROM teams WHERE token_sha256 = ?", (digest,)).fetchone()
        if row is None or row["revoked_utc"] is not None or not hmac.compare_digest(row["token_sha256"], digest):
            return None
        return row_team(row)

    def is_organiser(self, token: str) -> bool:
        team = self.team_by_token(token)
        return team is not None and team.organiser

    def list_teams(self) -> list[Team]:
        rows = self._db().execute("SELECT * FROM teams WHERE organiser = 0 ORDER BY name").fetchall()
        return [row_team(row) for row in rows]

    def team(self, name: str) -> Team:
        row = self._db().execute("SELECT * FROM teams WHERE name = ? AND organiser = 0", (name,)).fetchone()
        if row is None:
            raise UsageError(f"no team named {name!r} (edl team list shows them)")
        return row_team(row)

    def revoke_team(self, name: str) -> Team:
        """The team's token stops working at once; its submissions and results stay."""
        team = self.team(name)
        with self._write() as db:
            db.execute("UPDATE teams SET revoked_utc = COALESCE(revoked_utc, ?) WHERE id = ?",
                       (self.now_utc(), team.id))
        return self.team(name)

    # --- submissions --------------------------------------------------------------------------------------

    def receive(self, team: Team, sha256: str, size: int, path: Path) -> tuple[Submission, bool]:
        """Record an upload; ``(submission, created)``. The team's same file again returns the existing one, unless
        nothing of it stood (cancelled, refused for quota, failed on the organiser's side: see ``RECEIVED_AGAIN``):
        then it is received again, its history kept; another team's same file is flagged in ``duplicate_of``."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UsageError(f"sha256 {sha256!r}: expected 64 lowercase hex digits")
        with self._write() as db:
            row = db.execute("SELECT id, state, fault FROM submissions WHERE team_id = ? AND sha256 = ?",
                             (team.id, sha256)).fetchone()
            if row is not None and received_again(row["state"], row["fault"]) is None:
                return self._submission(db, row["id"]), False
            if row is not None:
                db.execute("UPDATE submissions SET reason = NULL, fault = NULL, queued_utc = NULL, queued_day = NULL, "
                           "lease_expiries = 0, result_folder = NULL WHERE id = ?", (row["id"],))
                self._enter(db, row["id"], "received", received_again(row["state"], row["fault"]) or "")
                return self._submission(db, row["id"]), True
            other = db.execute("SELECT MIN(id) FROM submissions WHERE sha256 = ? AND team_id != ?",
                               (sha256, team.id)).fetchone()[0]
            cursor = db.execute("INSERT INTO submissions (team_id, sha256, size, path, state, duplicate_of) "
                                "VALUES (?, ?, ?, ?, 'received', ?)", (team.id, sha256, size, str(path), other))
            assert cursor.lastrowid is not None
            self._enter(db, cursor.lastrowid, "received")
            return self._submission(db, cursor.lastrowid), True

    def quota(self, team: Team) -> Quota:
        return self._quota(self._db(), team.id)

    def _quota(self, db: sqlite3.Connection, team_id: int) -> Quota:
        today = self.now_utc()[:10]
        total, day = db.execute(f"SELECT COUNT(*), COALESCE(SUM(queued_day = ?), 0) FROM submissions "
                                f"WHERE team_id = ? AND {COUNTING}", (today, team_id)).fetchone()
        waiting = db.execute("SELECT COUNT(*) FROM submissions WHERE team_id = ? AND state IN ('queued', 'scoring')",
                             (team_id,)).fetchone()[0]
        limits = self.limits
        return Quota(day, max(0, limits.per_day - day), total, max(0, limits.in_total - total), waiting,
                     limits.max_queued)

    def mark_checked(self, submission_id: int, problems: list[str]) -> Submission:
        """The check's verdict: no problem -> checked, then queued (if the quota allows: else failed, not counted);
        problems -> failed with every problem in ``reason`` (the quota untouched)."""
        with self._write() as db:
            current = self._submission(db, submission_id)
            if current.state != "received":
                raise StoreError(f"submission {submission_id} is {current.state}, not waiting for its check")
            if problems:
                return self._failed(db, submission_id, "; ".join(problems), "check")
            self._enter(db, submission_id, "checked")
            team_id = db.execute("SELECT team_id FROM submissions WHERE id = ?", (submission_id,)).fetchone()[0]
            refusal = self._quota(db, team_id).refusal()
            if refusal is not None:
                return self._failed(db, submission_id, f"not queued: {refusal}; this file did not use the quota",
                                    "quota")
            now = self.now_utc()
            db.execute("UPDATE submissions SET queued_utc = ?, queued_day = ? WHERE id = ?",
                       (now, now[:10], submission_id))
            self._enter(db, submission_id, "queued")
            return self._submission(db, submission_id)

    def cancel(self, submission_id: int, team: Team) -> Submission:
        """The team (or the organiser) withdraws a submission still waiting: it stops using the quota. The organiser
        may also stop one being scored: its worker sees ``cancelled`` within a second (``is_cancelled``), kills the
        run in progress and records nothing. A team cannot: a scoring it stopped near its end would have used the
        machine without using the quota."""
        with self._write() as db:
            current = self._submission(db, submission_id)
            if current.team != team.name and not team.organiser:
                raise StoreError(f"submission {submission_id} is not yours")
            if current.state == "scoring" and team.organiser:
                self._enter(db, submission_id, "cancelled", "by the organiser, during its scoring: the run in "
                            "progress was stopped and nothing of it is recorded")
                return self._submission(db, submission_id)
            if current.state == "scoring":
                raise StoreError(f"submission {submission_id} is being scored: only the organiser can stop a "
                                 "scoring in progress")
            if current.state not in ("received", "checked", "queued"):
                raise StoreError(f"submission {submission_id} is {current.state}: only one still waiting can be "
                                 "cancelled")
            self._enter(db, submission_id, "cancelled", f"by {'the organiser' if team.organiser else team.name}")
            return self._submission(db, submission_id)

    def is_cancelled(self, submission_id: int) -> bool:
        """One read, for the worker scoring it: was it cancelled meanwhile?"""
        row = self._db().execute("SELECT state FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        return row is not None and row["state"] == "cancelled"

    def requeue(self, submission_id: int, detail: str = "re-run by the organiser") -> Submission:
        """The organiser scores a finished or failed submission again (it keeps its place in the quota)."""
        with self._write() as db:
            current = self._submission(db, submission_id)
            if (refusal := current.rerun_refusal()) is not None:
                raise StoreError(refusal)
            db.execute("UPDATE submissions SET reason = NULL, fault = NULL, lease_expiries = 0, "
                       "queued_utc = COALESCE(queued_utc, ?), queued_day = COALESCE(queued_day, ?) WHERE id = ?",
                       (self.now_utc(), self.now_utc()[:10], submission_id))
            self._enter(db, submission_id, "queued", detail)
            return self._submission(db, submission_id)

    def choose(self, submission_id: int, team: Team) -> Submission:
        """The team's pick for the final scoring (one per team; a scored one)."""
        with self._write() as db:
            current = self._submission(db, submission_id)
            if current.team != team.name:
                raise StoreError(f"submission {submission_id} is not yours")
            if current.state != "scored":
                raise StoreError(f"submission {submission_id} is {current.state}: choose a scored one")
            db.execute("UPDATE submissions SET chosen = (id = ?) WHERE team_id = ?", (submission_id, team.id))
            return self._submission(db, submission_id)

    def submission(self, submission_id: int) -> Submission:
        return self._submission(self._db(), submission_id)

    def submissions_of(self, team: Team) -> list[Submission]:
        rows = self._db().execute("SELECT id FROM submissions WHERE team_id = ? ORDER BY id", (team.id,)).fetchall()
        return [self.submission(row["id"]) for row in rows]

    def all_submissions(self, state: State | None = None) -> list[Submission]:
        query, args = ("SELECT id FROM submissions ORDER BY id", ()) if state is None else \
            ("SELECT id FROM submissions WHERE state = ? ORDER BY id", (state,))
        return [self.submission(row["id"]) for row in self._db().execute(query, args).fetchall()]

    def history(self, submission_id: int) -> list[tuple[str, str, str]]:
        """Every state the submission entered, in order: (state, UTC time, detail)."""
        rows = self._db().execute("SELECT state, utc, detail FROM history WHERE submission_id = ? ORDER BY rowid",
                                  (submission_id,)).fetchall()
        return [(row["state"], row["utc"], row["detail"]) for row in rows]

    def queue_position(self, submission_id: int) -> int | None:
        """1 for the next to be scored, 0 while scoring, None when not waiting."""
        db = self._db()
        row = db.execute("SELECT state, queued_utc FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        if row is None or row["state"] not in ("queued", "scoring"):
            return None
        if row["state"] == "scoring":
            return 0
        ahead = db.execute("SELECT COUNT(*) FROM submissions WHERE state = 'queued' AND (queued_utc < ? OR "
                           "(queued_utc = ? AND id < ?))", (row["queued_utc"], row["queued_utc"], submission_id))
        return int(ahead.fetchone()[0]) + 1

    # --- the worker's side --------------------------------------------------------------------------------

    def claim(self, worker_id: str, lease_s: float) -> Submission | None:
        """The next queued submission, now ``scoring`` under ``worker_id``'s lease; None when none waits. Expired
        leases are dealt with first: returned to the queue once, failed (not counted) the second time."""
        with self._write() as db:
            self._expire(db)
            row = db.execute("SELECT id FROM submissions WHERE state = 'queued' ORDER BY queued_utc, id LIMIT 1"
                             ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE submissions SET worker_id = ?, lease_until = ? WHERE id = ?",
                       (worker_id, self.clock() + lease_s, row["id"]))
            self._enter(db, row["id"], "scoring", f"claimed by {worker_id}")
            return self._submission(db, row["id"])

    def expire_leases(self) -> list[Submission]:
        """Deal with expired leases now (claim does it too); the submissions it changed."""
        with self._write() as db:
            return self._expire(db)

    def _expire(self, db: sqlite3.Connection) -> list[Submission]:
        rows = db.execute("SELECT id, lease_expiries, worker_id FROM submissions WHERE state = 'scoring' AND "
                          "lease_until < ?", (self.clock(),)).fetchall()
        changed = []
        for row in rows:
            self._clear_window_of(db, row["worker_id"])
            if row["lease_expiries"] == 0:
                db.execute("UPDATE submissions SET lease_expiries = 1, worker_id = NULL, lease_until = NULL "
                           "WHERE id = ?", (row["id"],))
                self._enter(db, row["id"], "queued", f"worker {row['worker_id']} stopped: scored again")
                changed.append(self._submission(db, row["id"]))
            else:
                db.execute("UPDATE submissions SET lease_expiries = lease_expiries + 1 WHERE id = ?", (row["id"],))
                changed.append(self._failed(
                    db, row["id"], "the scoring machine stopped twice while scoring this submission; it does not "
                    "use your quota, and the organiser has been told (submit it again or wait for a re-run)",
                    "organiser"))
        return changed

    def _clear_window_of(self, db: sqlite3.Connection, worker_id: str | None) -> None:
        """A worker whose lease expired holds no window: its flag goes with its lease."""
        row = db.execute("SELECT value FROM meta WHERE key = 'window'").fetchone()
        if row is not None and json.loads(row["value"]).get("worker") == worker_id:
            db.execute("DELETE FROM meta WHERE key = 'window'")

    def renew(self, submission_id: int, worker_id: str, lease_s: float) -> bool:
        """Extend the lease; False when the worker lost it (expired and taken back): it must stop."""
        with self._write() as db:
            cursor = db.execute("UPDATE submissions SET lease_until = ? WHERE id = ? AND state = 'scoring' AND "
                                "worker_id = ?", (self.clock() + lease_s, submission_id, worker_id))
            return cursor.rowcount == 1

    def _holding(self, db: sqlite3.Connection, submission_id: int, worker_id: str) -> bool:
        return db.execute("SELECT 1 FROM submissions WHERE id = ? AND state = 'scoring' AND worker_id = ?",
                          (submission_id, worker_id)).fetchone() is not None

    def finish(self, submission_id: int, worker_id: str, result_folder: str, model_sha256: str,
               settings_fingerprint: str, log_tail: str = "") -> tuple[Submission, bool]:
        """Record the scored result; ``(submission, recorded)``. A result is recorded once per model and comparable
        settings: a second finish of the same (another team's copy, a worker that lost its lease) records nothing
        new; the submission points at the one result."""
        with self._write() as db:
            if not self._holding(db, submission_id, worker_id):
                raise StoreError(f"worker {worker_id} does not hold submission {submission_id} (its lease expired)")
            existing = db.execute("SELECT folder FROM results WHERE model_sha256 = ? AND settings_fingerprint = ?",
                                  (model_sha256, settings_fingerprint)).fetchone()
            recorded = existing is None
            if recorded:
                db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?)", (model_sha256, settings_fingerprint,
                                                                         submission_id, result_folder,
                                                                         self.now_utc()))
            folder = result_folder if recorded else existing["folder"]
            db.execute("UPDATE submissions SET result_folder = ?, log_tail = ?, worker_id = NULL, lease_until = NULL, "
                       "reason = NULL, fault = NULL WHERE id = ?", (folder, tail(log_tail), submission_id))
            self._enter(db, submission_id, "scored", "" if recorded else f"the result of {folder} stands for it")
            return self._submission(db, submission_id), recorded

    def result_for(self, model_sha256: str, settings_fingerprint: str) -> str | None:
        row = self._db().execute("SELECT folder FROM results WHERE model_sha256 = ? AND settings_fingerprint = ?",
                                 (model_sha256, settings_fingerprint)).fetchone()
        return None if row is None else str(row["folder"])

    def fail(self, submission_id: int, worker_id: str, reason: str, fault: Fault, log_tail: str = "") -> Submission:
        """The scoring failed: ``reason`` for the team; ``fault`` "team" uses the quota, "organiser" does not."""
        with self._write() as db:
            if not self._holding(db, submission_id, worker_id):
                raise StoreError(f"worker {worker_id} does not hold submission {submission_id} (its lease expired)")
            return self._failed(db, submission_id, reason, fault, tail(log_tail))

    def give_back(self, submission_id: int, worker_id: str, detail: str | None = None) -> Submission:
        """The worker stops on purpose (shut down): the submission waits again, first in line, no expiry counted."""
        detail = detail or stopped_detail(worker_id)
        with self._write() as db:
            if not self._holding(db, submission_id, worker_id):
                raise StoreError(f"worker {worker_id} does not hold submission {submission_id}")
            db.execute("UPDATE submissions SET worker_id = NULL, lease_until = NULL WHERE id = ?", (submission_id,))
            self._enter(db, submission_id, "queued", detail)
            return self._submission(db, submission_id)

    def put_back_by(self, worker_id: str) -> list[Submission]:
        """The submissions the stopped worker gave back and that still wait (edl serve's Ctrl-C names them)."""
        rows = self._db().execute("SELECT DISTINCT h.submission_id FROM history h JOIN submissions s ON s.id = "
                                  "h.submission_id WHERE h.state = 'queued' AND h.detail = ? AND s.state = 'queued' "
                                  "ORDER BY h.submission_id", (stopped_detail(worker_id),)).fetchall()
        return [self.submission(row[0]) for row in rows]

    # --- progress and the measurement window --------------------------------------------------------------

    def add_event(self, submission_id: int, event: Event | dict[str, object]) -> None:
        """Store one progress event (an ``evaluator.events`` event or its JSON object)."""
        document = event if isinstance(event, dict) else event_json(event)
        parse_event(document)  # only a well-formed event is stored
        with self._write() as db:
            db.execute("INSERT INTO events (submission_id, utc, event) VALUES (?, ?, ?)",
                       (submission_id, self.now_utc(), json.dumps(document)))

    def events_of(self, submission_id: int) -> list[Event]:
        rows = self._db().execute("SELECT event FROM events WHERE submission_id = ? ORDER BY seq", (submission_id,))
        return [parse_event(json.loads(row["event"])) for row in rows]

    def latest_progress(self, submission_id: int) -> Progress:
        """The phase, passes and runs done, from the submission's stored events."""
        rows = self._db().execute("SELECT utc, event FROM events WHERE submission_id = ? ORDER BY seq",
                                  (submission_id,)).fetchall()
        return summarise([(row["utc"], parse_event(json.loads(row["event"]))) for row in rows])

    def set_window(self, worker_id: str, open_for_s: float | None) -> None:
        """The worker opens the measurement window (for at most ``open_for_s``: a dead worker's window closes by
        itself) or closes it (None)."""
        value = None if open_for_s is None else json.dumps({"worker": worker_id, "until": self.clock() + open_for_s})
        self._set_meta("window", value)

    def window_open(self) -> bool:
        """True while a metered window is open: checks of new uploads wait, pages serve what is rendered."""
        value = self._meta("window")
        return value is not None and float(json.loads(value)["until"]) > self.clock()

    def set_server_pid(self, pid: int) -> None:
        """The web server the worker watches: the final scoring records that process's CPU time too."""
        self._set_meta("server_pid", str(pid))

    def server_pid(self) -> int | None:
        value = self._meta("server_pid")
        return None if value is None else int(value)

    def phase_mark(self) -> str | None:
        """The phase the organiser moved the competition to ("final", "published"), None before that."""
        return self._meta("phase")

    def set_phase_mark(self, phase: str) -> None:
        self._set_meta("phase", phase)
