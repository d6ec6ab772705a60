"""Scoring a model on a task: batched greedy generation + parsing, and log-likelihood of candidate answers.

Works for a bare backbone, a ``ParaModel`` or a peft model alike: all take
``input_ids``/``attention_mask``/``labels`` and ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .tasks import Example, Task
from .training.batching import Encoded, collate, encode_prompt, encode_response, end_of_turn, left_pad, padding_id


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict] = field(default_factory=list)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.no_grad()
def generate_answers(model, tokenizer, examples: list[Example], max_new_tokens: int, max_length: int,
                     batch_size: int = 16, progress: bool = True) -> list[str]:
    """Greedy answers, batched by similar prompt length (left padded); returned in the examples' order."""
    device = next(model.parameters()).device
    prompts = [encode_prompt(tokenizer, e, max_length - max_new_tokens + 1) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(examples)
    pad_id = padding_id(tokenizer)
    with tqdm(total=len(examples), desc="generating", unit="ex", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            ids, mask = left_pad([prompts[i] for i in batch], pad_id)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad_id, eos_token_id=end_of_turn(tokenizer) or None)
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                answers[i] = text
            bar.update(len(batch))
    return answers


@torch.no_grad()
def choice_scores(model, tokenizer, examples: list[Example], max_length: int, batch_size: int = 16,
                  progress: bool = True) -> list[list[float]]:
    """Sum of log-probabilities of each candidate answer (+ end of turn) after the prompt."""
    device = next(model.parameters()).device
    rows: list[tuple[int, int, Encoded]] = []
    for i, example in enumerate(examples):
        prompt = encode_prompt(tokenizer, example, max_length)
        for j, choice in enumerate(example.choices or []):
            answer = encode_response(tokenizer, choice)
            answer = answer[: max_length - len(prompt)]
            rows.append((i, j, Encoded(prompt + answer, [-100] * len(prompt) + answer)))
    scores = [[0.0] * len(e.choices or []) for e in examples]
    pad_id = padding_id(tokenizer)
    order = sorted(range(len(rows)), key=lambda k: len(rows[k][2].input_ids))
    with tqdm(total=len(rows), desc="scoring choices", unit="seq", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            inputs = {k: v.to(device) for k, v in collate([rows[k][2] for k in batch], pad_id).items()}
            logits = model(**inputs).logits[:, :-1].float()
            targets = inputs["labels"][:, 1:]
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            totals = (logprobs * (targets != -100)).sum(-1).tolist()
            for k, total in zip(batch, totals):
                i, j, _ = rows[k]
                scores[i][j] = total
            bar.update(len(batch))
    return scores


def evaluate(model, tokenizer, task: Task, examples: list[Example], max_length: int = 1024, batch_size: int = 16,
             progress: bool = True, generation: bool = True) -> EvalResult:
    """The task's metric from generated answers; for tasks with choices also the log-likelihood accuracy."""
    metrics: dict[str, float] = {}
    records = [{"id": e.id, "answers": e.answers} for e in examples]
    if generation:
        generated = generate_answers(model, tokenizer, examples, task.max_new_tokens, max_length, batch_size, progress)
        predictions = [task.parse(text, e) for text, e in zip(generated, examples)]
        metrics.update(task.score(predictions, examples))
        for record, text, prediction in zip(records, generated, predictions):
            record.update(generated=text, prediction=prediction)
    if examples and examples[0].choices:
        scores = choice_scores(model, tokenizer, examples, max_length, batch_size, progress)
        picks = [max(range(len(s)), key=s.__getitem__) for s in scores]
        metrics["loglik_accuracy"] = sum(p == e.label for p, e in zip(picks, examples)) / len(examples)
        for record, score, pick in zip(records, scores, picks):
            record.update(choice_logprobs=score, choice_pick=pick)
    return EvalResult(metrics, records)
