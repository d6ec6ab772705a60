"""SQL text handling for Spider: normalisation for exact-match scoring, tidy targets, statement cut.

Two queries count as equal when they differ only in things SQLite ignores or
that are mere formatting: keyword/identifier case, whitespace, spacing around
punctuation and operators, the quote style of string literals, backtick or
bracket quoting of identifiers, and a trailing semicolon. The contents of
string literals keep their case, since ``'France'`` and ``'france'`` select
different rows.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
      (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")   # string literal; a doubled quote escapes itself
    | (?P<quoted>`[^`]*`|\[[^\]]*\])              # quoted identifier
    | (?P<number>\d+(?:\.\d+)?|\.\d+)
    | (?P<word>\w+)
    | (?P<operator><>|!=|>=|<=|==|\|\|)
    | (?P<other>\S)                               # any other single character: ( ) , . * = ; ...
    """,
    re.VERBOSE,
)


def tokenize(sql: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens of ``sql``; whitespace is dropped, an unclosed quote is a lone character."""
    return [(match.lastgroup or "", match.group()) for match in _TOKEN.finditer(sql)]


def _canonical(kind: str, text: str) -> str:
    if kind == "string":
        quote = text[0]
        content = text[1:-1].replace(quote * 2, quote)
        return "'" + content.replace("'", "''") + "'"
    if kind == "quoted":
        name = text[1:-1].lower()
        return name if re.fullmatch(r"\w+", name) else f"`{name}`"
    return text.lower()


def normalise_sql(sql: str) -> str:
    """Canonical text: tokens joined by single spaces, lower-cased outside literals, literals in single quotes."""
    tokens = [_canonical(kind, text) for kind, text in tokenize(sql)]
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return " ".join(tokens)


def first_statement(sql: str) -> str:
    """``sql`` up to (not including) its first semicolon outside string literals."""
    for match in _TOKEN.finditer(sql):
        if match.group() == ";":
            return sql[: match.start()]
    return sql


def tidy_sql(sql: str) -> str:
    """``sql`` with each run of whitespace between tokens collapsed to one space and no trailing semicolon.

    Used for training targets: Spider's gold queries space operators
    inconsistently (``a  =  b``) and end in ``;`` about one time in seven, noise
    a model would only learn to copy. Case, quote style and the contents of
    literals are kept as written.
    """
    pieces: list[str] = []
    end = 0
    for match in _TOKEN.finditer(sql):
        if match.start() > end and pieces:
            pieces.append(" ")
        pieces.append(match.group())
        end = match.end()
    while pieces and pieces[-1] in (";", " "):
        pieces.pop()
    return "".join(pieces)
