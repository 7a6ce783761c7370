"""Located settings errors: every mistake names its file, line and column.

    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(problem)      # integration.yaml:14:16: unknown direction 'recieve'; ...

A `SettingsError` carries every problem found in one pass (sorted by file and position), so a
user fixes them all at once. Messages never repeat a secret: a token found in a file is described
by its length, never shown.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Location", "Problem", "SettingsError", "suggest"]


@dataclass(frozen=True, order=True)
class Location:
    """A place in a settings file: 1-based line and column, as editors show them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is (if it is in a file) and what to do about it."""

    location: Location | None
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.message) if loc else ("", 0, 0, self.message)


class SettingsError(Exception):
    """The settings cannot be used; nothing may run. `problems` lists every mistake found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        unique: dict[str, Problem] = {}
        for problem in problems:
            unique.setdefault(str(problem), problem)
        self.problems: list[Problem] = sorted(unique.values(), key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid settings")

    @property
    def messages(self) -> list[str]:
        """Each problem as `file:line:column: message`."""
        return [str(p) for p in self.problems]


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def suggest(word: object, options: Iterable[object]) -> str:
    """` (did you mean 'X'?)` when exactly one option is close to `word`, else ``."""
    choices = {_norm(str(o)): str(o) for o in options}
    close = difflib.get_close_matches(_norm(str(word)), list(choices), n=1, cutoff=0.75)
    return f" (did you mean '{choices[close[0]]}'?)" if close else ""
