"""Scoring a model on a task: batched greedy generation + parsing, and log-likelihood of candidate answers.

Works for a bare backbone, a ``ParaModel`` or a peft model alike: all take
``input_ids``/``attention_mask`` and ``generate``.

Over-long examples never abort a run: their passage is cut by the rule of
:mod:`.tasks.truncation` (question and options stay whole); one that cannot be
fitted is scored wrong. Both are counted in ``EvalResult.counts`` (and in the
metrics JSON of ``para eval``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .model import ParaModel
from .tasks import Example, Task
from .tasks.truncation import FittedPrompt, PromptTooLongError, fit_prompt
from .training.batching import Encoded, collate, encode_response, end_of_turn, left_pad, padding_id

IGNORE = -100


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict] = field(default_factory=list)
    # examples whose passage was cut to fit ("truncated") and those that could not be fitted ("unfitted")
    counts: dict[str, int] = field(default_factory=lambda: {"truncated": 0, "unfitted": 0})


def fit_all(tokenizer, examples: list[Example], limits: list[int]) -> list[FittedPrompt | None]:
    """Each example's prompt fitted to its limit; None for one that cannot be fitted (scored wrong)."""
    fitted: list[FittedPrompt | None] = []
    for example, limit in zip(examples, limits):
        try:
            fitted.append(fit_prompt(tokenizer, example, limit))
        except PromptTooLongError:
            fitted.append(None)
    return fitted


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.no_grad()
def generate_answers(model, tokenizer, examples: list[Example], max_new_tokens: int, max_length: int,
                     batch_size: int = 16, progress: bool = True,
                     fitted: list[FittedPrompt | None] | None = None) -> list[str]:
    """Greedy answers, batched by similar prompt length (left padded); returned in the examples' order.

    A prompt gets ``max_length - max_new_tokens`` tokens; an example that cannot be fitted answers ``""``.
    """
    device = next(model.parameters()).device
    if fitted is None:
        fitted = fit_all(tokenizer, examples, [max_length - max_new_tokens] * len(examples))
    order = sorted((i for i, f in enumerate(fitted) if f is not None), key=lambda i: len(fitted[i].ids))
    answers: list[str] = [""] * len(examples)
    pad_id = padding_id(tokenizer)
    with tqdm(total=len(order), desc="generating", unit="ex", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            ids, mask = left_pad([fitted[i].ids for i in batch], pad_id)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad_id, eos_token_id=end_of_turn(tokenizer) or None)
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                answers[i] = text
            bar.update(len(batch))
    return answers


def candidate_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per row, the summed log-probability of its labelled tokens, computing logits only where one is predicted.

    A full forward makes batch x length x vocabulary logits; only positions whose next token is a
    candidate's are needed, so the model is asked for those alone (``logits_to_keep`` with the positions
    any row needs): memory stays a small multiple of the model's, whatever the passage length.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]  # position p predicts token p + 1
    needed = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    if needed.numel() == 0:
        return torch.zeros(labels.shape[0], device=labels.device)
    extra = {"prompt_mask": labels == IGNORE} if isinstance(model, ParaModel) else {}
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=needed, **extra)
    kept = targets[:, needed]
    logprobs = torch.log_softmax(out.logits.float(), dim=-1).gather(-1, kept.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logprobs * (kept != IGNORE)).sum(-1)


@torch.no_grad()
def choice_scores(model, tokenizer, examples: list[Example], max_length: int, batch_size: int = 16,
                  progress: bool = True, fitted: list[FittedPrompt | None] | None = None) -> list[list[float]]:
    """Sum of log-probabilities of each candidate answer (+ end of turn) after the prompt.

    The prompt is fitted so that its longest candidate fits too; an example that cannot be fitted gets
    ``-inf`` for every candidate (scored wrong).
    """
    device = next(model.parameters()).device
    answers = [[encode_response(tokenizer, c) for c in e.choices or []] for e in examples]
    if fitted is None:
        fitted = fit_all(tokenizer, examples, [max_length - max(map(len, a), default=0) for a in answers])
    rows: list[tuple[int, int, Encoded]] = []
    scores = [[float("-inf")] * len(e.choices or []) for e in examples]
    for i, (fit, candidates) in enumerate(zip(fitted, answers)):
        if fit is None:
            continue
        for j, answer in enumerate(candidates):
            rows.append((i, j, Encoded(fit.ids + answer, [IGNORE] * len(fit.ids) + answer)))
    pad_id = padding_id(tokenizer)
    order = sorted(range(len(rows)), key=lambda k: len(rows[k][2].input_ids))
    with tqdm(total=len(rows), desc="scoring choices", unit="seq", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            inputs = {k: v.to(device) for k, v in collate([rows[k][2] for k in batch], pad_id).items()}
            for k, total in zip(batch, candidate_logprobs(model, inputs).tolist()):
                i, j, _ = rows[k]
                scores[i][j] = total
            bar.update(len(batch))
    return scores


def count_fits(counts: dict[str, int], fitted: list[FittedPrompt | None]) -> None:
    """Add one pass's truncated / unfitted examples (the larger count of the passes is what is reported)."""
    counts["truncated"] = max(counts["truncated"], sum(1 for f in fitted if f is not None and f.cut_tokens))
    counts["unfitted"] = max(counts["unfitted"], sum(1 for f in fitted if f is None))


def evaluate(model, tokenizer, task: Task, examples: list[Example], max_length: int = 1024, batch_size: int = 16,
             progress: bool = True, generation: bool = True) -> EvalResult:
    """The task's metric from generated answers; for tasks with choices also the log-likelihood accuracy."""
    metrics: dict[str, float] = {}
    records = [{"id": e.id, "answers": e.answers} for e in examples]
    counts = {"truncated": 0, "unfitted": 0}
    if generation:
        fitted = fit_all(tokenizer, examples, [max_length - task.max_new_tokens] * len(examples))
        count_fits(counts, fitted)
        generated = generate_answers(model, tokenizer, examples, task.max_new_tokens, max_length, batch_size, progress,
                                     fitted=fitted)
        predictions = [task.parse(text, e) if f is not None else "" for text, e, f in zip(generated, examples, fitted)]
        metrics.update(task.score(predictions, examples))
        for record, text, prediction, fit in zip(records, generated, predictions, fitted):
            record.update(generated=text, prediction=prediction, prompt_cut_tokens=fit.cut_tokens if fit else None)
    if examples and examples[0].choices:
        answers = [[encode_response(tokenizer, c) for c in e.choices or []] for e in examples]
        fitted = fit_all(tokenizer, examples, [max_length - max(map(len, a), default=0) for a in answers])
        count_fits(counts, fitted)
        scores = choice_scores(model, tokenizer, examples, max_length, batch_size, progress, fitted=fitted)
        # An unfitted example's scores are all -inf: it counts as wrong, not as choice 0.
        picks = [max(range(len(s)), key=s.__getitem__) if s and s[0] != float("-inf") else -1 for s in scores]
        metrics["loglik_accuracy"] = sum(p == e.label for p, e in zip(picks, examples)) / len(examples)
        for record, score, pick in zip(records, scores, picks):
            record.update(choice_logprobs=score if pick >= 0 else None, choice_pick=pick)
    return EvalResult(metrics, records, counts)
