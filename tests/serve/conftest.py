"""Shared fixtures of the service's tests: a competition folder in tmp_path, its store, a team with its token.

serve-web's tests may use these; fixtures of its own go in tests/serve/web_fixtures.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluator.serve.competition import init_competition, open_store
from evaluator.serve.settings import Competition, CompetitionSettings
from evaluator.serve.store import Store, Submission, Team

DEADLINE = "2030-01-01T00:00Z"


class Clock:
    """A clock the test moves: the store's idea of now (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:  # 2027-01-15: before DEADLINE
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TeamLogin:
    team: Team
    token: str


@pytest.fixture
def competition(tmp_path: Path) -> Competition:
    """A fresh competition (default settings, deadline in 2030) in tmp_path/competition; organiser token dropped."""
    made, _ = init_competition(tmp_path / "competition", CompetitionSettings(name="Test cup", deadline=DEADLINE))
    return made


@pytest.fixture
def organiser_token(tmp_path: Path) -> tuple[Competition, str]:
    return init_competition(tmp_path / "organised", CompetitionSettings(name="Organised cup", deadline=DEADLINE))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(competition: Competition, clock: Clock) -> Store:
    """The competition's store on the test's clock."""
    opened = open_store(competition)
    opened.clock = clock
    return opened


@pytest.fixture
def team(store: Store) -> TeamLogin:
    token = store.add_team("alpha")
    found = store.team_by_token(token)
    assert found is not None
    return TeamLogin(found, token)


@pytest.fixture
def upload(store: Store, competition: Competition) -> Callable[[Team, bytes], tuple[Submission, bool]]:
    """A function: ``content`` stored under its sha256 in the uploads folder and received for a team, as the web
    app does after streaming it."""

    def receive(team: Team, content: bytes) -> tuple[Submission, bool]:
        digest = hashlib.sha256(content).hexdigest()
        path = competition.uploads / f"{digest}.onnx"
        path.write_bytes(content)
        return store.receive(team, digest, len(content), path)

    return receive


@pytest.fixture
def test_set(tmp_path: Path) -> Path:
    """A labelled test set of 500 oracle images, 480 of them answered right by ``oracle_model``."""
    from builders import oracle_images, save_npz

    images, labels = oracle_images(500, correct=480)
    return save_npz(tmp_path / "test-set.npz", images, labels)


@pytest.fixture
def make_competition(tmp_path: Path, test_set: Path) -> Callable[..., Competition]:
    """A function: a competition scoring fast on ``test_set`` (2 passes, no idle or cool-down, audit off, one run,
    unless told), settings given as keywords (``repeat``, ``timeout_s`` and any CompetitionSettings field)."""
    from builders import fast_config

    from evaluator.config import AuditConfig, BatchConfig

    made = 0

    def make(repeat: int = 1, timeout_s: float = 120.0, **settings: object) -> Competition:
        nonlocal made
        made += 1
        score = dataclasses.replace(fast_config(test_set), repeat=repeat, audit=AuditConfig(audit_copies=0))
        chosen = CompetitionSettings(**({"name": "Fast cup", "deadline": DEADLINE, "score": score,
                                         "batch": BatchConfig(timeout_s=timeout_s)} | settings))  # type: ignore[arg-type]
        return init_competition(tmp_path / f"scoring-{made}", chosen)[0]

    return make
