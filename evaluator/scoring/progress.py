"""What the scorer tells a progress display: phases and images done. Nothing in scoring prints."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None) -> None:
        """A new phase begins; ``total`` images when it counts them."""

    def advance(self, images: int = 0) -> None:
        """``images`` more were classified in this phase."""


class Silent:
    """A progress display that shows nothing (the library's default)."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, images: int = 0) -> None:
        pass
