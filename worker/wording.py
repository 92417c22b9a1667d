"""How a message says a count: the worker's errors and readings and the CLI and the console
alike ("1 blob", "2,048 blobs"), so none of them says "1 blobs"."""

from __future__ import annotations


def counted(n: int, word: str, many: str | None = None) -> str:
    """`n` and the word that goes with it: "1 blob", "2,048 blobs", "3 entries" (`many`)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def plural_s(n: int) -> str:
    """The ending of a word counted `n` times, for a template that holds its own number
    ("{count} blob{s}")."""
    return "" if n == 1 else "s"
