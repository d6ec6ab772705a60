"""Task registry: data loading, prompt formatting, answer parsers and metrics (no model needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from parapeft.tasks import (
    DATA_ENV,
    TASKS,
    DataNotFoundError,
    Example,
    MalformedDataError,
    Task,
    UnknownSplitError,
    UnknownTaskError,
    get_task,
    render_prompt,
    render_response,
)
from parapeft.tasks.copa import pick_choice
from parapeft.tasks.datafiles import default_data_roots
from parapeft.tasks.gsm8k import extract_answer, normalise_number
from parapeft.tasks.holdout import carve, holdout_indices
from parapeft.tasks.spider import format_schema
from parapeft.tasks.sql_normalise import normalise_sql, tidy_sql
from parapeft.tasks.squad import clean_answer
from parapeft.tasks.squad_metric import evaluate, exact_match_score, f1_score, normalize_answer


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def example(answers: list[str], choices: list[str] | None = None) -> Example:
    return Example(id="x", prompt="p", target=answers[0], answers=answers, choices=choices)


# --- registry, splits, data location ------------------------------------------------------------


def test_registry_lists_every_task_and_each_follows_the_interface():
    assert list(TASKS) == ["boolq", "copa", "squad", "gsm8k", "spider", "instruct"]
    for name, task in TASKS.items():
        assert isinstance(task, Task)
        assert task.name == name and task.max_new_tokens > 0
        assert get_task(name.upper()) is task


def test_unknown_task_lists_known_tasks():
    with pytest.raises(UnknownTaskError, match="known tasks: boolq, copa, squad, gsm8k, spider, instruct"):
        get_task("mnli")


def test_unknown_split_lists_valid_splits_and_val_is_an_alias_of_dev(tmp_path):
    with pytest.raises(UnknownSplitError, match="valid splits: train, dev"):
        get_task("boolq").examples("test", tmp_path)
    write_jsonl(tmp_path / "copa" / "val.jsonl", [COPA_RECORD])
    for split in ("dev", "val", "validation"):
        assert len(get_task("copa").examples(split, tmp_path)) == 1


def test_missing_data_says_where_it_looked_and_how_to_point_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        get_task("boolq").examples("dev")
    message = str(err.value)
    assert str(tmp_path / "boolq" / "dev.jsonl") in message and DATA_ENV in message and "--data" in message
    with pytest.raises(DataNotFoundError, match="does not exist"):
        get_task("boolq").examples("dev", tmp_path / "nowhere")


def test_data_may_be_a_root_a_task_folder_or_the_file_itself(tmp_path, monkeypatch):
    file = write_jsonl(tmp_path / "boolq" / "dev.jsonl", [BOOLQ_RECORD])
    boolq = get_task("boolq")
    for data in (tmp_path, tmp_path / "boolq", file, str(file)):
        assert [e.target for e in boolq.examples("dev", data)] == ["yes"]
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert default_data_roots() == [tmp_path]
    assert len(boolq.examples("dev")) == 1


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps(BOOLQ_RECORD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}:2: not valid JSON")):
        get_task("boolq").examples("dev", path)
    write_jsonl(path, [BOOLQ_RECORD, {k: v for k, v in BOOLQ_RECORD.items() if k != "passage"}])
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}:2: missing field 'passage'")):
        get_task("boolq").examples("dev", path)
    write_jsonl(path, [{**BOOLQ_RECORD, "label": "yes"}])
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}:1: field 'label' should be bool or int")):
        get_task("boolq").examples("dev", path)


def test_limit_takes_the_first_examples(tmp_path):
    path = write_jsonl(tmp_path / "dev.jsonl", [{**BOOLQ_RECORD, "idx": i} for i in range(5)])
    assert [e.id for e in get_task("boolq").examples("dev", path, limit=2)] == ["boolq-0", "boolq-1"]
    with pytest.raises(ValueError, match="limit"):
        get_task("boolq").examples("dev", path, limit=-1)


def test_score_refuses_misaligned_lists():
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        get_task("boolq").score(["yes", "no"], [example(["yes"])])


# --- BoolQ -----------------------------------------------------------------------------------------

BOOLQ_RECORD = {
    "question": "is the sky blue",
    "passage": "Sky -- The sky appears blue because of Rayleigh scattering.",
    "idx": 7,
    "label": True,
}


def test_boolq_formatting(tmp_path):
    (ex,) = get_task("boolq").examples("dev", write_jsonl(tmp_path / "dev.jsonl", [BOOLQ_RECORD]))
    assert "Passage: Sky -- The sky appears blue because of Rayleigh scattering." in ex.prompt
    assert "Question: Is the sky blue?" in ex.prompt and "yes or no" in ex.prompt
    assert (ex.id, ex.target, ex.answers, ex.choices, ex.label) == ("boolq-7", "yes", ["yes"], ["no", "yes"], 1)
    (neg,) = get_task("boolq").examples("dev", write_jsonl(tmp_path / "n.jsonl", [{**BOOLQ_RECORD, "label": False}]))
    assert (neg.target, neg.label) == ("no", 0)


@pytest.mark.parametrize(
    "generated, parsed",
    [
        ("Yes.", "yes"),
        ("NO, it is not.", "no"),
        ("Answer: yes", "yes"),
        ("Not really, no.", "no"),  # "Not" is not the word "no"
        ("No. Well, yes.", "no"),  # the first yes/no word decides
        ("Yesterday it was", ""),
        ("Nope", ""),
        ("True", ""),
        ("", ""),
    ],
)
def test_boolq_parser(generated, parsed):
    assert get_task("boolq").parse(generated, example(["yes"])) == parsed


def test_boolq_accuracy():
    examples = [example(["yes"]), example(["yes"]), example(["no"]), example(["no"])]
    assert get_task("boolq").score(["yes", "no", "", "no"], examples) == {"accuracy": 0.5}


# --- COPA -----------------------------------------------------------------------------------------

COPA_RECORD = {
    "premise": "The man turned on the faucet.",
    "choice1": "The toilet filled with water.",
    "choice2": "Water flowed from the spout.",
    "question": "effect",
    "label": 1,
    "idx": 0,
}


def test_copa_formatting(tmp_path):
    cause = {**COPA_RECORD, "question": "cause", "label": 0, "idx": 1}
    effect, cause = get_task("copa").examples("dev", write_jsonl(tmp_path / "val.jsonl", [COPA_RECORD, cause]))
    assert "Premise: The man turned on the faucet." in effect.prompt
    assert "- The toilet filled with water.\n- Water flowed from the spout." in effect.prompt
    assert "What happened as a result?" in effect.prompt and "What was the cause of this?" in cause.prompt
    assert effect.target == "Water flowed from the spout." and effect.answers == [effect.target]
    assert effect.choices == ["The toilet filled with water.", "Water flowed from the spout."]
    assert (effect.label, cause.label, cause.target) == (1, 0, "The toilet filled with water.")


def test_copa_rejects_unknown_question(tmp_path):
    path = write_jsonl(tmp_path / "val.jsonl", [{**COPA_RECORD, "question": "reason"}])
    with pytest.raises(MalformedDataError, match=":1: question must be 'cause' or 'effect'"):
        get_task("copa").examples("dev", path)


@pytest.mark.parametrize(
    "generated, parsed",
    [
        ("Water flowed from the spout.", "Water flowed from the spout."),
        ("water flowed from the spout", "Water flowed from the spout."),
        ("Answer: The toilet filled with water.\nBecause...", "The toilet filled with water."),
        ("- Water flowed from the spout.", "Water flowed from the spout."),
        ("The water flowed.", "Water flowed from the spout."),  # F1 2/3 against 1/3
        ("water", ""),  # equal overlap with both: a tie counts wrong
        ("Option 2", ""),
        ("", ""),
    ],
)
def test_copa_parser(generated, parsed):
    assert pick_choice(generated, [COPA_RECORD["choice1"], COPA_RECORD["choice2"]]) == parsed


def test_copa_accuracy():
    choices = [COPA_RECORD["choice1"], COPA_RECORD["choice2"]]
    examples = [example([choices[1]], choices), example([choices[0]], choices), example([choices[0]], choices)]
    score = get_task("copa").score([choices[1], choices[1], ""], examples)
    assert score == {"accuracy": pytest.approx(1 / 3)}


# --- SQuAD ----------------------------------------------------------------------------------------


def test_squad_normaliser_drops_case_punctuation_articles_and_extra_whitespace():
    assert normalize_answer("  The  Denver Broncos!! ") == "denver broncos"
    assert normalize_answer("An apple a day, the end.") == "apple day end"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("U.S.") == "us"


def test_squad_exact_match_and_f1():
    assert exact_match_score("the Denver Broncos", "Denver Broncos") == 1.0
    assert f1_score("Broncos won", "Denver Broncos") == pytest.approx(0.5)
    assert f1_score("Carolina Panthers", "Denver Broncos") == 0.0
    assert f1_score("the", "a") == 0.0  # nothing left after normalisation


def test_squad_score_takes_max_over_references():
    predictions = ["Denver Broncos", "Broncos won", "Paris", "Broncos"]
    references = [["Broncos", "Denver Broncos"], ["Denver Broncos"], ["London"], ["the Denver Broncos", "Broncos!"]]
    examples = [example(refs) for refs in references]
    # EM: 1, 0, 0, 1 -> 0.5; F1: 1, 0.5, 0, 1 -> 0.625
    assert get_task("squad").score(predictions, examples) == {"exact_match": 0.5, "f1": pytest.approx(0.625)}
    assert evaluate(predictions, references)["f1"] == pytest.approx(0.625)


@pytest.mark.parametrize(
    "generated, parsed",
    [
        ("Denver Broncos", "Denver Broncos"),
        ('"Denver Broncos."', "Denver Broncos"),
        ("“Denver Broncos”", "Denver Broncos"),
        ("Answer: the Denver Broncos.\nThey won Super Bowl 50.", "the Denver Broncos"),
        ("\n\n  Denver Broncos  \n", "Denver Broncos"),
        ("Washington D.C.", "Washington D.C."),
        ("It's 5.", "It's 5."),  # not stripped: the normaliser drops the stop anyway
        ("", ""),
    ],
)
def test_squad_parser(generated, parsed):
    assert clean_answer(generated) == parsed


def test_squad_formatting(tmp_path):
    document = {
        "version": "1.1",
        "data": [
            {
                "title": "Super_Bowl_50",
                "paragraphs": [
                    {
                        "context": "The Denver Broncos defeated the Carolina Panthers.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Who won?",
                                "answers": [
                                    {"answer_start": 0, "text": "The Denver Broncos"},
                                    {"answer_start": 4, "text": "Denver Broncos"},
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (ex,) = get_task("squad").examples("dev", write_json(tmp_path / "dev.json", document))
    assert "Passage: The Denver Broncos defeated the Carolina Panthers." in ex.prompt
    assert "Question: Who won?" in ex.prompt
    assert (ex.id, ex.target, ex.answers) == ("q1", "The Denver Broncos", ["The Denver Broncos", "Denver Broncos"])
    with pytest.raises(MalformedDataError, match="official SQuAD format"):
        get_task("squad").examples("dev", write_json(tmp_path / "bad.json", [document]))


# --- GSM8K ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generated, parsed",
    [
        ("So the total is 1234.\n#### 1,234", "1234"),
        ("The answer is $18.00.", "18"),
        ("She pays 3 + 4 = 7 dollars.\n#### 7\nAnswer: 9", "7"),  # after the last ####, not the last number
        ("#### 5 apples\n#### $1,050.50", "1050.5"),
        ("#### +12", "12"),
        ("It drops to -5 degrees.", "-5"),
        ("COVID-19 closed 3 schools", "3"),  # a hyphen glued to a word is not a minus sign
        ("1,2,3 and 4", "4"),
        ("#### none\nso 42 it is", "42"),  # nothing after ####: the last number in the text
        ("I cannot solve this.", ""),
    ],
)
def test_gsm8k_answer_parser(generated, parsed):
    assert extract_answer(generated) == parsed


@pytest.mark.parametrize(
    "number, normalised",
    [("1,234", "1234"), ("$18.00", "18"), ("+7", "7"), ("0.50", "0.5"), ("007", "7"), ("-0", "0"), (".5", "0.5")],
)
def test_gsm8k_number_normalisation(number, normalised):
    assert normalise_number(number) == normalised


def test_gsm8k_formatting_and_score(tmp_path):
    record = {
        "question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
        "answer": "May: 48/2 = <<48/2=24>>24 clips.\nTotal: 48+24 = <<48+24=72>>72 clips.\n#### 1,072",
    }
    (ex,) = get_task("gsm8k").examples("all", write_jsonl(tmp_path / "train.jsonl", [record]))
    assert record["question"] in ex.prompt and "####" in ex.prompt
    assert ex.target == "May: 48/2 = 24 clips.\nTotal: 48+24 = 72 clips.\n#### 1,072"  # calculator notes removed
    assert ex.answers == ["1072"]
    task = get_task("gsm8k")
    assert task.score([task.parse("... #### 1,072.0", ex), "72"], [ex, ex]) == {"exact_match": 0.5}


def test_holdout_is_a_fixed_function_of_seed_and_index():
    assert sorted(holdout_indices(10, 3)) == [1, 6, 9]
    assert sorted(holdout_indices(10, 3, seed=1)) != [1, 6, 9]
    rows = list(range(10))
    assert carve(rows, "dev", 3) == [1, 6, 9] and carve(rows, "train", 3) == [0, 2, 3, 4, 5, 7, 8]
    assert carve(rows, "all", 3) == rows
    with pytest.raises(ValueError, match="cannot hold out 10 of 10"):
        carve(rows, "dev", 10)


# --- Spider ---------------------------------------------------------------------------------------

SCHEMA = {
    "db_id": "concert",
    "table_names_original": ["singer", "concert"],
    "table_names": ["singer", "concert"],
    "column_names_original": [[-1, "*"], [0, "Singer_ID"], [0, "Name"], [0, "Country"], [1, "ID"], [1, "Singer_ID"]],
    "column_names": [[-1, "*"], [0, "singer id"], [0, "name"], [0, "country"], [1, "id"], [1, "singer id"]],
    "column_types": ["text", "number", "text", "text", "number", "number"],
    "primary_keys": [1, 4],
    "foreign_keys": [[5, 1]],
}


def test_spider_schema_and_formatting(tmp_path):
    assert format_schema(SCHEMA) == (
        "singer(Singer_ID, Name, Country)\nconcert(ID, Singer_ID)\n"
        "Primary keys: singer.Singer_ID, concert.ID\nForeign keys: concert.Singer_ID -> singer.Singer_ID"
    )
    write_json(tmp_path / "tables.json", [SCHEMA])
    query = 'SELECT Name FROM singer WHERE Country  =  "France";'
    dev = write_json(tmp_path / "dev.json", [{"db_id": "concert", "question": "Who is French?", "query": query}])
    (ex,) = get_task("spider").examples("dev", dev)
    assert format_schema(SCHEMA) in ex.prompt and "Question: Who is French?" in ex.prompt
    assert ex.target == 'SELECT Name FROM singer WHERE Country = "France"' and ex.answers == [query]
    write_json(tmp_path / "dev.json", [{"db_id": "nope", "question": "?", "query": "SELECT 1"}])
    with pytest.raises(MalformedDataError, match="database 'nope' is not in"):
        get_task("spider").examples("dev", dev)
    (tmp_path / "tables.json").unlink()
    with pytest.raises(DataNotFoundError, match=r"tables\.json"):
        get_task("spider").examples("dev", dev)


@pytest.mark.parametrize(
    "a, b",
    [
        ('SELECT Name FROM singer WHERE Country  =  "France";', "select name from SINGER where country='France'"),
        ("SELECT count(*) FROM singer", "select COUNT ( * )  from singer ;"),
        ("SELECT T1.name FROM singer AS T1", "select t1 . name\nfrom singer as t1"),
        ("SELECT `Name` FROM [singer]", "SELECT name FROM singer"),
        ("SELECT a FROM t WHERE b != 'it''s'", 'SELECT a FROM t WHERE b!="it\'s"'),
        ("SELECT a FROM t WHERE b >= 3", "SELECT a FROM t WHERE b>=3"),
    ],
)
def test_sql_normaliser_equal(a, b):
    assert normalise_sql(a) == normalise_sql(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer WHERE country = 'france'"),
        ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer WHERE country = France"),
        ("SELECT a FROM t WHERE b > 3", "SELECT a FROM t WHERE b >= 3"),
        ("SELECT name FROM singer", "SELECT name FROM singer WHERE 1"),
    ],
)
def test_sql_normaliser_different(a, b):
    assert normalise_sql(a) != normalise_sql(b)


def test_tidy_sql_keeps_literals_and_case():
    assert tidy_sql("SELECT  A ,  count(*)\nFROM t WHERE x = 'a  b' ;") == "SELECT A , count(*) FROM t WHERE x = 'a  b'"


@pytest.mark.parametrize(
    "generated, parsed",
    [
        ("SELECT name FROM singer;", "SELECT name FROM singer"),
        ("```sql\nSELECT name\nFROM singer;\n```\nThis lists names.", "SELECT name\nFROM singer"),
        ("```sql\nSELECT name FROM singer", "SELECT name FROM singer"),  # cut off before the closing fence
        ("```sqlite\nSELECT count(*) FROM singer\n```", "SELECT count(*) FROM singer"),
        ("```SQLite SELECT name FROM singer```", "SELECT name FROM singer"),
        ("SQL: SELECT name FROM singer\n\nExplanation: ...", "SELECT name FROM singer"),
        ("SELECT 'a;b' FROM t; DROP TABLE t", "SELECT 'a;b' FROM t"),
    ],
)
def test_spider_parser(generated, parsed):
    assert get_task("spider").parse(generated, example(["SELECT 1"])) == parsed


def test_spider_exact_match():
    examples = [example(['SELECT Name FROM singer WHERE Country  =  "France";']), example(["SELECT count(*) FROM t"])]
    predictions = ["select name from singer where country = 'France'", "SELECT count(id) FROM t"]
    assert get_task("spider").score(predictions, examples) == {"exact_match": 0.5}


# --- instruction data -----------------------------------------------------------------------------


def test_instruct_reads_all_three_record_forms(tmp_path):
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ]
    }
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "Say hi", "response": "hi", "id": "a"}, chat])
    pair, dialog = get_task("instruct").examples("all", path)
    assert (pair.id, pair.prompt, pair.target, pair.answers, pair.system) == ("a", "Say hi", "hi", ["hi"], None)
    assert (dialog.prompt, dialog.target, dialog.system) == ("2+2?", "4", "Be brief.")
    assert dialog.history == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    alpaca = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Name a colour.", "input": "", "output": "Red"},
    ]
    with_input, without = get_task("instruct").examples("all", write_json(tmp_path / "a.json", alpaca))
    assert with_input.prompt == "Add the numbers.\n\n2 and 3" and with_input.target == "5"
    assert without.prompt == "Name a colour." and without.id == "instruct-1"


@pytest.mark.parametrize(
    "record, message",
    [
        ({"text": "hi"}, "expected prompt/response, messages, or instruction"),
        ({"prompt": "hi"}, "missing field 'response'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "must end with a user turn followed by the assistant"),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "has role 'bot'"),
    ],
)
def test_instruct_malformed_records(tmp_path, record, message):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "a", "response": "b"}, record])
    with pytest.raises(MalformedDataError, match=rf"data.jsonl:2: .*{message}"):
        get_task("instruct").examples("all", path)


def test_instruct_needs_a_file_and_splits_it_90_10(tmp_path):
    instruct = get_task("instruct")
    with pytest.raises(DataNotFoundError, match="--data FILE"):
        instruct.examples("train")
    with pytest.raises(MalformedDataError, match=r"\.jsonl or \.json"):
        instruct.examples("train", write_jsonl(tmp_path / "data.txt", [{"prompt": "a", "response": "b"}]))
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(20)])
    train, dev = instruct.examples("train", path), instruct.examples("dev", path)
    assert (len(train), len(dev)) == (18, 2) and not {e.id for e in train} & {e.id for e in dev}
    assert [e.id for e in dev] == [e.id for e in instruct.examples("val", path)]
    assert len(instruct.examples("all", path)) == 20


def test_instruct_metrics():
    examples = [example(["The cat sat."]), example(["Paris is big"])]
    assert get_task("instruct").score(["the cat sat", "Paris"], examples) == {
        "exact_match": 0.5,
        "f1": pytest.approx((1 + 0.5) / 2),  # "Paris" vs "paris is big": P 1, R 1/3 -> F1 0.5
    }
    assert get_task("instruct").parse("  Paris\n", examples[1]) == "Paris"


# --- rendering ------------------------------------------------------------------------------------


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>")


def test_render_prompt_without_chat_template_uses_plain_fallback():
    tokenizer = tiny_tokenizer()
    assert not tokenizer.chat_template
    assert render_prompt("Is it? Answer yes or no.", tokenizer) == "Is it? Answer yes or no.\n\nAnswer:"
    assert render_prompt("Q", None, system="Be brief.") == "Be brief.\n\nQ\n\nAnswer:"
    chat = Example(
        id="c",
        prompt="2+2?",
        target="4",
        answers=["4"],
        system="Be brief.",
        history=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    )
    assert render_prompt(chat, tokenizer) == "Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\n2+2?\n\nAnswer:"
    assert render_response("yes", tokenizer) == " yes"  # "Answer: yes", as in ordinary text


def test_a_base_model_s_beginning_of_sequence_token_comes_first_in_training_evaluation_and_generation():
    """A tokenizer that puts <s> first (Llama-2, Mistral, Gemma base models) and has no chat template: the prompt's
    ids start with it once wherever they are made, including after a long passage was cut; a chat template writes
    its own special tokens, so nothing is added then."""
    from tokenizers import processors

    from parapeft.cli.generate import encode_prompt
    from parapeft.tasks.truncation import fit_prompt
    from parapeft.training.batching import encode_for_training

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "yes": 5,
                                          "Answer": 6, ":": 7, "...": 8}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    assert tokenizer("hello").input_ids == [1, 3]
    example = Example(id="b", prompt="hello world", target="yes", answers=["yes"])
    prompt = fit_prompt(tokenizer, example, 64).ids
    assert prompt[0] == 1 and prompt.count(1) == 1
    assert encode_for_training(tokenizer, example, 64).input_ids[: len(prompt)] == prompt
    assert encode_prompt(tokenizer, render_prompt(example, tokenizer), None, raw=True)[0].tolist() == prompt
    passage = " ".join(["hello world"] * 20)
    long = Example(id="l", prompt=f"{passage} yes", target="yes", answers=["yes"], context=passage)
    cut = fit_prompt(tokenizer, long, 12)
    assert cut.cut_tokens > 0 and cut.ids[0] == 1 and cut.ids.count(1) == 1 and len(cut.ids) <= 12
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m.content }} {% endfor %}Answer :"
    templated = fit_prompt(tokenizer, example, 64).ids
    assert templated[0] == 1 and templated.count(1) == 1  # the template's own <s>, not a second one


def test_render_prompt_uses_the_chat_template_when_set():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    ex = Example(id="e", prompt="Is it?", target="yes", answers=["yes"])
    assert render_prompt(ex, tokenizer) == "<|user|>Is it?\n<|assistant|>"
    assert render_prompt(ex, tokenizer, system="Be brief.") == "<|system|>Be brief.\n<|user|>Is it?\n<|assistant|>"
    chat = Example(
        id="c",
        prompt="2+2?",
        target="4",
        answers=["4"],
        system="Own system.",
        history=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    )
    assert render_prompt(chat, tokenizer) == (
        "<|system|>Own system.\n<|user|>Hi\n<|assistant|>Hello!\n<|user|>2+2?\n<|assistant|>"
    )
    assert render_prompt(chat, tokenizer, system="Override.").startswith("<|system|>Override.\n")
    assert render_response("yes", tokenizer) == "yes"  # right after the assistant header


# --- the shared data files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_data() -> Path:
    roots = [root for root in default_data_roots() if (root / "boolq").is_dir()]
    if not roots:
        pytest.fail(f"shared task data not found (looked at {default_data_roots()}); set {DATA_ENV}")
    return roots[0]


@pytest.mark.parametrize(
    "task, split, size",
    [
        ("boolq", "train", 2270),
        ("boolq", "dev", 500),
        ("copa", "train", 400),
        ("copa", "dev", 100),
        ("gsm8k", "train", 6973),
        ("gsm8k", "dev", 500),
        ("gsm8k", "all", 7473),
        ("squad", "train", 7747),
        ("squad", "dev", 1092),
        ("spider", "train", 803),
        ("spider", "dev", 64),
    ],
)
def test_shared_files_load_with_documented_sizes(shared_data, task, split, size):
    examples = get_task(task).examples(split, shared_data)
    assert len(examples) == size
    assert len({e.id for e in examples}) == size  # ids identify examples
    assert all(e.prompt and e.target and e.answers for e in examples)


def test_shared_gsm8k_dev_is_disjoint_and_stable(shared_data):
    gsm8k = get_task("gsm8k")
    train, dev = gsm8k.examples("train", shared_data), gsm8k.examples("dev", shared_data)
    train_ids, dev_ids = {e.id for e in train}, {e.id for e in dev}
    assert not train_ids & dev_ids and len(train_ids | dev_ids) == 7473
    assert not {e.prompt for e in train} & {e.prompt for e in dev}
    # Pinned: the dev split must never change across runs, machines or Python versions.
    assert [e.id for e in dev[:5]] == ["gsm8k-39", "gsm8k-47", "gsm8k-64", "gsm8k-94", "gsm8k-101"]
    assert all(e.answers[0] == extract_answer(e.target) for e in dev)


def test_shared_instruction_file_splits(shared_data):
    path = shared_data / "instruction" / "code_alpaca_2k.json"
    instruct = get_task("instruct")
    assert (len(instruct.examples("train", path)), len(instruct.examples("dev", path))) == (1816, 201)
