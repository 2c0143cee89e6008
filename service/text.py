"""Texts the database must take: PostgreSQL refuses a text longer than its VARCHAR, or holding a NUL character or
a lone surrogate (not UTF-8), where SQLite would store it. Checked where a text enters (a token's names, a form
field) and, for whatever comes another way, when a value is bound to a column (service/db/models.py: Str,
LongText), so that a request answers the same on either database."""
from __future__ import annotations

NAME_LENGTH = 200  # user, group, process and business keys (the columns that hold them)


class NotStorable(ValueError):
    """A text that PostgreSQL refuses and SQLite would store: longer than its column, or holding a NUL character or
    a lone surrogate (not UTF-8). Refused on both databases, so a request answers the same on either (422)."""


def storable_problem(value: str, length: int | None) -> str | None:
    """Why the database cannot keep the text (None: it can)."""
    if length is not None and len(value) > length:
        return f"a text is longer than the {length} characters it may have"
    if "\x00" in value:
        return "a text holds a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a text holds a lone surrogate, which UTF-8 cannot encode"
    return None


def check_storable(value: str, length: int | None) -> None:
    problem = storable_problem(value, length)
    if problem is not None:
        raise NotStorable(problem)


def ascii_number(text: str, digits: int) -> int | None:
    """A whole number of at most `digits` ASCII digits, else None ("²" is a digit to str.isdigit, and int() refuses
    it; int() also refuses thousands of digits)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


def storable_text(value: str, length: int) -> str:
    """A text of our own making (an error message that may quote what a client sent) made storable: NUL and lone
    surrogates escaped, cut to the column's length."""
    cleaned = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned[:length]
