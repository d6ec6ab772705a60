"""Spider: text-to-SQL over a database whose schema is given in the prompt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from .base import Example, FileTask
from .datafiles import field, read_json
from .errors import DataNotFoundError, MalformedDataError
from .scoring import check_aligned
from .sql_normalise import first_statement, normalise_sql, tidy_sql

TABLES = "tables.json"
# the longer language tag first: `sql` alone would take the start of "sqlite" and leave "ite" in the query
_FENCED = re.compile(r"```(?:sqlite|sql)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:sql(?:ite)?(?:\s+query)?|query|answer)\s*:\s*", re.IGNORECASE)


def format_schema(entry: dict[str, Any]) -> str:
    """One line per table, ``table(col1, col2, ...)``, then primary and foreign keys.

    Uses the original (query-side) names, since gold queries are written with them.
    """
    tables = entry["table_names_original"]
    columns = entry["column_names_original"]  # [table index, name]; entry 0 is [-1, "*"]

    def qualified(column: int) -> str:
        table, name = columns[column]
        return f"{tables[table]}.{name}"

    lines = [f"{table}({', '.join(name for t, name in columns if t == i)})" for i, table in enumerate(tables)]
    if entry["primary_keys"]:
        lines.append("Primary keys: " + ", ".join(qualified(c) for c in entry["primary_keys"]))
    if entry["foreign_keys"]:
        links = (f"{qualified(a)} -> {qualified(b)}" for a, b in entry["foreign_keys"])
        lines.append("Foreign keys: " + ", ".join(links))
    return "\n".join(lines)


def format_prompt(schema: str, question: str) -> str:
    return (
        "Write an SQLite query that answers the question about the database below. "
        "Reply with the SQL query only, on one line.\n\n"
        f"Database schema:\n{schema}\n\n"
        f"Question: {question.strip()}"
    )


def load_schemas(path: Path) -> dict[str, str]:
    """``db_id`` -> formatted schema for every database in a Spider ``tables.json``."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise MalformedDataError(f"{path}: expected a list of database schemas")
    try:
        return {entry["db_id"]: format_schema(entry) for entry in entries}
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise MalformedDataError(f"{path}: not in Spider's tables.json format ({err!r})") from None


class Spider(FileTask):
    name = "spider"
    metric = "exact_match"
    max_new_tokens = 160
    files: ClassVar[dict[str, str]] = {"train": "train.json", "dev": "dev.json"}

    def load(self, split: str, path: Path) -> list[Example]:
        tables = path.parent / TABLES
        if not tables.is_file():
            raise DataNotFoundError(f"spider: {path} needs the database schemas in {tables}, which does not exist")
        schemas = load_schemas(tables)
        records = read_json(path)
        if not isinstance(records, list):
            raise MalformedDataError(f"{path}: expected a list of Spider examples")
        examples = []
        for n, record in enumerate(records):
            where = f"{path}: example {n}"
            if not isinstance(record, dict):
                raise MalformedDataError(f"{where}: expected a JSON object")
            db_id = field(record, "db_id", where)
            if db_id not in schemas:
                raise MalformedDataError(f"{where}: database {db_id!r} is not in {tables}")
            query = field(record, "query", where)
            examples.append(
                Example(
                    id=f"spider-{split}-{n}",
                    prompt=format_prompt(schemas[db_id], field(record, "question", where)),
                    context=schemas[db_id],
                    target=tidy_sql(query),
                    answers=[query],
                )
            )
        return examples

    def parse(self, generated: str, example: Example) -> str:
        """The first SQL statement: inside a code fence if there is one, else before the first blank line."""
        fenced = _FENCED.search(generated)
        text = fenced.group(1) if fenced else generated.strip().split("\n\n")[0]
        return first_statement(_LABEL.sub("", text.strip())).strip()

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        check_aligned(predictions, examples)
        hits = sum(
            normalise_sql(pred) in {normalise_sql(answer) for answer in ex.answers}
            for pred, ex in zip(predictions, examples, strict=True)
        )
        return {"exact_match": hits / len(examples)}
