"""Who is asking: page sessions (cookie + CSRF token), bearer tokens for the API, and per-client rate limits.

A session lives in the server's memory only: its cookie holds a random id, never the team's token, and
every form carries the session's CSRF token (compared in constant time). The sign-in form itself is
protected by a double-submitted cookie. A restart signs everyone out; nothing secret is on disk here.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

SESSION_COOKIE = "edl_session"
PRESESSION_COOKIE = "edl_signin"
SESSION_S = 12 * 3600.0
ORGANISER = "organiser"  # the session kind of the organiser; a team's session kind is "team"


@dataclass(frozen=True)
class Session:
    kind: str  # "team" or ORGANISER
    subject: str  # the team's name, or "organiser"
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Sessions by their random id; expired ones are dropped as they are met."""

    lifetime_s: float = SESSION_S
    _by_id: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, kind: str, subject: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(kind, subject, secrets.token_urlsafe(24), time.monotonic() + self.lifetime_s)
        with self._lock:
            self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is not None and session.expires < time.monotonic():
                del self._by_id[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def close_subject(self, subject: str) -> None:
        """A revoked team is signed out everywhere."""
        with self._lock:
            for key in [k for k, s in self._by_id.items() if s.kind == "team" and s.subject == subject]:
                del self._by_id[key]


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing value on either side never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


UNKNOWN_TOKEN = "unknown or revoked token: ask the organiser for a new one"  # the API, edl submit and sign-in


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """A token bucket per client and kind of request: ``rate_per_s`` sustained, ``burst`` at once.

    What a flood costs the server is one dictionary lookup and a 429 answer: a rival cannot buy CPU time
    on the measured host by reading the board in a loop.
    """

    rate_per_s: float
    burst: float
    max_clients: int = 10_000
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str, kind: str = "read") -> bool:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get((client, kind))
            if bucket is None:
                if len(self._buckets) >= self.max_clients:
                    self._buckets.clear()  # bounded memory: a spoofed-address flood forgets itself
                bucket = self._buckets[(client, kind)] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate_per_s)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True

    def retry_after_s(self) -> int:
        return max(1, round(1.0 / self.rate_per_s))
