"""Evaluation survives real data: over-long passages are cut by the documented rule, counted, never fatal;
likelihood scoring computes logits only where candidates are scored and equals the full computation."""

from __future__ import annotations

import json

import pytest
import torch

from parapeft import ParaConfig, get_para_model, get_task, load_base_model
from parapeft.cli.main import main
from parapeft.evaluation import candidate_logprobs, evaluate
from parapeft.tasks.truncation import CUT_MARK, PromptTooLongError, fit_prompt
from parapeft.training.batching import Encoded, collate
from parapeft.training.methods import attach
from tiny_models import VOCAB, randomize_adapter, save_tiny_checkpoint, tiny_model

MAX_LENGTH = 240
WORDS = "the river runs past the old mill and the town grew along its banks over many years".split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-eval")
    save_tiny_checkpoint(path, [" ".join(WORDS)] * 30 + ["Read the passage and answer the question yes or no"] * 10,
                         chat=True, vocab_size=200, context=256)
    return str(path)


@pytest.fixture(scope="module")
def boolq_file(tmp_path_factory):
    rows = [
        {"idx": 0, "passage": "The mill is old.", "question": "is the mill old", "label": True},
        {"idx": 1, "passage": " ".join(WORDS * 40), "question": "does the river run past the mill", "label": True},
        {"idx": 2, "passage": " ".join(WORDS * 25), "question": "did the town grow", "label": False},
        {"idx": 3, "passage": "Short.", "question": " ".join(WORDS * 20), "label": False},  # the question alone is too long
    ]
    path = tmp_path_factory.mktemp("boolq") / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_over_long_prompt_loses_the_end_of_its_passage_only(tiny_dir, boolq_file):
    _, tokenizer = load_base_model(tiny_dir)
    long_example = get_task("boolq").examples("dev", boolq_file)[1]
    fitted = fit_prompt(tokenizer, long_example, MAX_LENGTH)
    assert len(fitted.ids) <= MAX_LENGTH and fitted.cut_tokens > 0
    text = tokenizer.decode(fitted.ids)
    assert "Question: Does the river run past the mill?" in text and "Answer with a single word: yes or no." in text
    passage = text.split("Passage: ", 1)[1].split("\n\nQuestion:", 1)[0]
    assert passage.endswith(CUT_MARK) and long_example.context.startswith(passage[: -len(CUT_MARK)])
    with pytest.raises(PromptTooLongError, match="even without its passage"):
        fit_prompt(tokenizer, get_task("boolq").examples("dev", boolq_file)[3], MAX_LENGTH)


def test_para_eval_on_a_file_with_over_long_passages_finishes_and_reports_the_counts(tiny_dir, boolq_file, tmp_path):
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", tiny_dir, "--task", "boolq", "--data", str(boolq_file), "--max-length",
                 str(MAX_LENGTH), "--output", str(out), "--no-progress", "--batch-size", "2", "--device", "cpu"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["examples"] == 4 and report["truncated"] == 2 and report["unfitted"] == 1
    by_id = {p["id"]: p for p in report["predictions"]}
    assert by_id["boolq-3"]["prediction"] == "" and by_id["boolq-3"]["choice_pick"] == -1  # scored wrong
    assert by_id["boolq-1"]["prompt_cut_tokens"] > 0 and by_id["boolq-0"]["prompt_cut_tokens"] == 0
    assert 0 <= report["metrics"]["accuracy"] <= 0.75 and 0 <= report["metrics"]["loglik_accuracy"] <= 0.75


def test_an_example_without_a_passage_that_does_not_fit_is_counted_not_fatal(tiny_dir):
    model, tokenizer = load_base_model(tiny_dir)
    copa = get_task("copa").examples("dev", limit=3)
    result = evaluate(model, tokenizer, get_task("copa"), copa, max_length=40, batch_size=2, progress=False)
    assert result.counts == {"truncated": 0, "unfitted": 3}
    assert result.metrics["accuracy"] == 0 and result.metrics["loglik_accuracy"] == 0


@pytest.mark.parametrize("method", ["para", "lora"])
def test_candidate_logprobs_keep_only_the_scored_positions_and_equal_the_full_logits(method):
    torch.manual_seed(0)
    model = attach(tiny_model("llama"), method, 4, "mean", 0.0)
    if method == "para":
        randomize_adapter(model, "default", 2, scale=0.3)
    model.eval()
    rows = []
    for prompt, answer in ((6, 2), (9, 1), (4, 3)):
        ids = torch.randint(3, VOCAB, (prompt + answer,)).tolist()
        rows.append(Encoded(ids, [-100] * prompt + ids[prompt:]))
    batch = collate(rows, 0)
    with torch.no_grad():
        ours = candidate_logprobs(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       **({"labels": batch["labels"]} if method == "para" else {})).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    full = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(ours, (full * (targets != -100)).sum(-1), atol=1e-5, rtol=1e-5)


def test_para_vectors_in_likelihood_scoring_come_from_the_prompt_only():
    """The candidate must not reach the pooler: scoring a candidate equals scoring it after the same prompt alone."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4))
    randomize_adapter(para, "default", 4, scale=0.3)
    para.eval()
    prompt = torch.randint(3, VOCAB, (7,)).tolist()
    rows = [Encoded(prompt + [10, 11], [-100] * 7 + [10, 11]), Encoded(prompt + [20, 21, 22], [-100] * 7 + [20, 21, 22])]
    with torch.no_grad():
        candidate_logprobs(para, collate(rows, 0))
        scored = [dict(v) for v in para.last_vectors()]
        para(input_ids=torch.tensor([prompt, prompt]))
        prompt_only = para.last_vectors()
    for got, want in zip(scored, prompt_only):
        assert all(torch.allclose(got[t], want[t], atol=1e-6) for t in want)
