"""The adapter's model card (``README.md``): YAML front matter the Hub and tools read, then prose.

The metadata follows what peft writes for its adapters (``library_name``, ``base_model``, the
``base_model:adapter:<id>`` tag, ``pipeline_tag``), plus the task's data set and, when known, its dev
metrics as a ``model-index`` (rendered by ``huggingface_hub``'s ``ModelCardData``). An existing card
keeps its prose: only the front matter is rewritten.
"""

from __future__ import annotations

from pathlib import Path

from .config import ParaConfig

CARD_NAME = "README.md"
LIBRARY = "parapeft"
# Task name -> (Hub data set id, config): the public copies of the data the tasks read.
TASK_DATASETS = {
    "boolq": ("google/boolq", None),
    "copa": ("aps/super_glue", "copa"),
    "squad": ("rajpurkar/squad", None),
    "gsm8k": ("openai/gsm8k", "main"),
    "spider": ("xlangai/spider", None),
}


def card_metadata(config: ParaConfig, task: str | None = None, metrics: dict[str, float] | None = None,
                  model_name: str | None = None):
    from huggingface_hub import EvalResult, ModelCardData

    base = config.base_model_name_or_path
    tags = ["para", "peft", "prompt-aware-representation-adjustment", "text-generation"]
    if base:
        tags.insert(0, f"base_model:adapter:{base}")
    if config.base_model_variant:
        tags.append(f"parapeft-variant:{config.base_model_variant}")
    dataset = TASK_DATASETS.get(task or "")
    results = None
    if dataset and metrics:
        results = [
            EvalResult(task_type="text-generation", dataset_type=dataset[0], dataset_name=task, dataset_config=dataset[1],
                       dataset_split="validation", metric_type=name, metric_name=name, metric_value=round(value, 4))
            for name, value in sorted(metrics.items())
        ]
    return ModelCardData(
        library_name=LIBRARY,
        base_model=base,
        tags=tags,
        pipeline_tag="text-generation",
        datasets=[dataset[0]] if dataset else None,
        eval_results=results,
        model_name=model_name or (f"para-{task}" if task else "para-adapter"),
    )


def default_body(config: ParaConfig, task: str | None) -> str:
    backbone = config.base_model_variant or config.base_model_name_or_path or "<its backbone>"
    title = f"PARA adapter: {task}" if task else "PARA adapter"
    return (
        f"# {title}\n\n"
        f"A PARA (Prompt-Aware Representation Adjustment) adapter for `{config.base_model_name_or_path or 'a causal LM'}`: "
        f"r={config.r}, {config.pooler} pooling, scaling {', '.join(config.targets)}"
        + "".join(f", {key}={value}" for key, value in config.variant().items() if key != "targets") + ".\n\n"
        "```python\n"
        "from parapeft import ParaModel, load_base_model\n\n"
        f'model, tokenizer = load_base_model("{backbone}")\n'
        'model = ParaModel.from_pretrained(model, "<this directory or Hub id>")\n'
        "```\n"
    )


def split_card(text: str) -> tuple[str | None, str]:
    """``(front matter, body)`` of a card; no front matter gives ``(None, text)``."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[4:end], text[end + 5 :].lstrip("\n")
    return None, text


def write_model_card(directory: str | Path, config: ParaConfig, task: str | None = None,
                     metrics: dict[str, float] | None = None) -> Path:
    path = Path(directory) / CARD_NAME
    body = split_card(path.read_text())[1] if path.is_file() else default_body(config, task)
    metadata = card_metadata(config, task, metrics).to_yaml()
    path.write_text(f"---\n{metadata}\n---\n\n{body}")
    return path
