"""Users' own instruction data: prompt/response pairs, chat transcripts or Alpaca records.

Every record of one file may use any of three forms:

* ``{"prompt": ..., "response": ...}``
* ``{"messages": [{"role": ..., "content": ...}, ...]}`` - the last message must
  be the assistant's and becomes the target; the user message before it is the
  prompt; an optional leading system message becomes ``Example.system``; the
  turns in between are kept in ``Example.history`` and rendered by the chat
  template as earlier turns.
* ``{"instruction": ..., "input": ..., "output": ...}`` (Alpaca) - the prompt is
  the instruction, then a blank line and the input when the input is not empty.

``.jsonl`` files hold one record per line, ``.json`` files a list of records.
One file is split into fixed ``train``/``dev`` parts (90/10, seeded, see
:mod:`.holdout`); ``"all"`` is the whole file, for users who keep training and
evaluation data in separate files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .base import Example, FileTask
from .datafiles import field, read_json, read_jsonl
from .errors import DataNotFoundError, MalformedDataError
from .holdout import SEED, carve
from .squad_metric import evaluate

SPLITS = ["train", "dev", "all"]
DEV_FRACTION = 10  # one example in DEV_FRACTION goes to dev
ROLES = ("system", "user", "assistant")


def read_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(location, record)`` pairs of a ``.jsonl`` or ``.json`` file."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".json":
        records = read_json(path)
        if not isinstance(records, list):
            raise MalformedDataError(f"{path}: a .json data file must hold a list of records")
        located = [(f"{path}: record {n}", record) for n, record in enumerate(records, start=1)]
        for where, record in located:
            if not isinstance(record, dict):
                raise MalformedDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        return located
    raise MalformedDataError(f"{path}: instruction data must be a .jsonl or .json file")


def from_messages(messages: list[Any], where: str) -> tuple[str, str, str | None, list[dict[str, str]]]:
    """``(prompt, target, system, history)`` of a chat transcript."""
    turns = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise MalformedDataError(f"{where}: messages[{n}] should be an object with role and content")
        role = field(message, "role", f"{where}: messages[{n}]")
        if role not in ROLES or (role == "system" and n > 0):
            raise MalformedDataError(
                f"{where}: messages[{n}] has role {role!r}; expected an optional first "
                "'system', then 'user' and 'assistant' turns"
            )
        turns.append({"role": role, "content": field(message, "content", f"{where}: messages[{n}]")})
    system = turns.pop(0)["content"] if turns and turns[0]["role"] == "system" else None
    if len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user":
        raise MalformedDataError(f"{where}: messages must end with a user turn followed by the assistant's response")
    return turns[-2]["content"], turns[-1]["content"], system, turns[:-2]


def to_example(record: dict[str, Any], where: str, number: int) -> Example:
    system: str | None = None
    history: list[dict[str, str]] = []
    if "messages" in record:
        prompt, target, system, history = from_messages(field(record, "messages", where, list), where)
    elif "prompt" in record:
        prompt, target = field(record, "prompt", where), field(record, "response", where)
    elif "instruction" in record:
        prompt, target = field(record, "instruction", where), field(record, "output", where)
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise MalformedDataError(f"{where}: field 'input' should be str, got {type(extra).__name__}")
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
    else:
        raise MalformedDataError(
            f"{where}: expected prompt/response, messages, or instruction/input/output fields; got {sorted(record)}"
        )
    return Example(
        id=str(record.get("id", f"instruct-{number}")),
        prompt=prompt,
        target=target,
        answers=[target],
        system=system,
        history=history,
    )


class Instruct(FileTask):
    name = "instruct"
    metric = "f1"
    max_new_tokens = 320
    files: ClassVar[dict[str, str]] = {}  # no default location: the user always names the file

    def splits(self) -> list[str]:
        return list(SPLITS)

    def source(self, split: str, data: str | Path | None) -> Path:
        if data is None:
            raise DataNotFoundError(
                "instruct: needs a data file; pass data=FILE (CLI: --data FILE): a .jsonl file of "
                "prompt/response or messages records, or a .json list of Alpaca records"
            )
        path = Path(data).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"instruct: data file {path} does not exist or is not a file")
        return path

    def load(self, split: str, path: Path) -> list[Example]:
        examples = [to_example(record, where, n) for n, (where, record) in enumerate(read_records(path))]
        if split != "all" and len(examples) < 2:
            raise MalformedDataError(
                f"{path}: {len(examples)} example(s) cannot be split into train and dev; use split 'all'"
            )
        return carve(examples, split, max(1, len(examples) // DEV_FRACTION), SEED)

    def parse(self, generated: str, example: Example) -> str:
        return generated.strip()

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        """SQuAD-style exact match and token F1 against the reference response."""
        return evaluate(predictions, [ex.answers for ex in examples])
