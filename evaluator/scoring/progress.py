"""What the scorer tells a progress display: phases, images done, and waits. Nothing in scoring prints."""

from __future__ import annotations

import time
from typing import Protocol

TICK_S = 1.0  # a wait tells the display this often, so that a countdown moves (and a pipe gets a line now and then)


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None) -> None:
        """A new phase begins; ``total`` images when it counts them."""

    def advance(self, images: int = 0) -> None:
        """``images`` more were classified in this phase (0 during a wait: time passed)."""

    def countdown(self, name: str, seconds: float) -> None:
        """A new phase begins that waits at most ``seconds`` (idle baseline, cool-down): the display shows time left."""


class Silent:
    """A progress display that shows nothing (the library's default)."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, images: int = 0) -> None:
        pass

    def countdown(self, name: str, seconds: float) -> None:
        pass


def wait(progress: Progress, seconds: float) -> None:
    """Sleep ``seconds``, telling ``progress`` every ``TICK_S`` so that its countdown moves."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK_S, left))
        progress.advance()
