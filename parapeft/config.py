"""Configuration of a PARA adapter (stored as ``adapter_config.json``)."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

POOLERS = ("mean", "last", "max", "attention")
ACTIVATIONS = ("silu", "gelu", "relu")
TARGETS = ("q", "v", "up")  # the paper's targets: what the engine's kernels scale
# Every activation a PARA-family adapter may scale, in the canonical order of W_up's output. k is the key
# projection's output (scaled before it is cached, so the cache stays valid), o the input of the attention
# output projection, down the input of the FFN down projection.
ALL_TARGETS = ("q", "k", "v", "o", "up", "down")
# Which backbone width each target has: k is as wide as v (key-value heads), o as q, down as up.
TARGET_WIDTH = {"q": "q", "k": "v", "v": "v", "o": "q", "up": "up", "down": "up"}
# How a generator's output l becomes the multiplier: 1 + l (the paper), or bounded forms that are 1 at l = 0.
SCALE_FORMS = ("linear", "tanh", "sigmoid")
# One multiplier per channel (the paper) or per attention head (q, k, v, o; up and down stay per channel).
GRANULARITIES = ("channel", "head")
HEAD_TARGETS = ("q", "k", "v", "o")
# What the generator pools: the layer's normalised attention input (the paper) or the residual stream entering it.
GENERATOR_INPUTS = ("normed", "residual")
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_TYPE = "PARA"
FORMAT_VERSION = 1
TASK_TYPE = "CAUSAL_LM"
# Keys every peft adapter_config.json carries. They are read and checked, then dropped with a warning: PARA
# adapts causal LMs only (task_type), trainability is chosen when loading (is_trainable, not inference_mode), the
# backbone is named by base_model_name_or_path / base_model_variant (revision), and peft_version is peft's own.
PEFT_GENERIC_KEYS = ("peft_version", "task_type", "revision", "inference_mode")


class PeftKeyWarning(UserWarning):
    """A generic peft config key that a PARA adapter reads but does not use."""


@dataclass
class ParaConfig:
    """Hyper-parameters of one PARA adapter.

    Every decoder layer gets a vector generator ``act(W_down · pool(x))`` →
    ``W_up`` that scales that layer's query, value and FFN-up activations
    element-wise by ``1 + l``; ``x`` is the prompt part of the layer's
    normalised attention input. The defaults are the paper's form; the
    variant settings (more targets, a static bias, bounded scale forms, the
    residual stream as input) keep its serving property: a fixed set of
    vectors per prompt, applied element-wise while decoding.
    """

    r: int = field(default=12, metadata={"help": "Bottleneck width of each layer's vector generator."})
    pooler: str = field(
        default="mean",
        metadata={"help": "How prompt positions are summarised: mean | last | max | attention (learned scores)."},
    )
    activation: str = field(default="silu", metadata={"help": "Generator non-linearity: silu | gelu | relu."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the pooled prompt vector while training."})
    targets: list[str] = field(
        default_factory=lambda: list(TARGETS),
        metadata={"help": "Activations to scale: q, v, up (query, value, FFN up projection; the paper's), and "
                  "optionally k (key, before caching), o (input of the attention output projection), down (input "
                  "of the FFN down projection)."},
    )
    static_bias: bool = field(
        default=False,
        metadata={"help": "Add a learned static vector b to each generator's output, l = b + W_up·h (zero at init): "
                  "a static per-channel scaling of PARA's targets, as IA3 learns, plus the prompt-aware part."},
    )
    scale_form: str = field(
        default="linear",
        metadata={"help": "Multiplier from l: linear 1 + l (the paper) | tanh 1 + tanh(l) | sigmoid 2·sigmoid(l)."},
    )
    generator_input: str = field(
        default="normed",
        metadata={"help": "What the generator pools: normed (the layer's normalised attention input, the paper) | "
                  "residual (the residual stream entering the layer)."},
    )
    granularity: str = field(
        default="channel",
        metadata={"help": "channel: one multiplier per channel (the paper) | head: one per attention head for q, k, "
                  "v and o (up and down stay per channel), so W_up is narrower and r can be larger."},
    )
    pool_layer: int | None = field(
        default=None,
        metadata={"help": "Pool from deeper: a first pass of the frozen backbone over the prompt gives the input of "
                  "this layer (normed or residual, as generator_input says), and every layer's generator reads that "
                  "one tensor instead of its own input; None: each layer reads its own (the paper)."},
    )
    layers_to_transform: list[int] | None = field(
        default=None, metadata={"help": "Decoder layers that get a generator; None means every layer."}
    )
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Backbone the adapter was trained on: its Hugging Face Hub id when it has one, else the "
                  "name or path it was loaded from."},
    )
    base_model_variant: str | None = field(
        default=None,
        metadata={"help": "The parapeft named model the backbone was loaded as, when it was one (e.g. 'smollm2-135m', "
                  "the Q4_1 GGUF of HuggingFaceTB/SmolLM2-135M-Instruct dequantised); None for the published weights. "
                  "Written only when set."},
    )
    model_type: str | None = field(default=None, metadata={"help": "Backbone architecture, filled in on attach."})
    dims: dict[str, int] | None = field(
        default=None,
        metadata={"help": "Backbone widths (hidden, q, v, up, num_layers), filled in on attach and checked on load."},
    )
    peft_type: str = PEFT_TYPE
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"r must be a positive integer, got {self.r!r}")
        if self.pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {', '.join(POOLERS)}; got {self.pooler!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        self.targets = list(self.targets)
        unknown = [t for t in self.targets if t not in ALL_TARGETS]
        if unknown or not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(
                f"targets must be a non-empty subset of {', '.join(ALL_TARGETS)} without repeats; got {self.targets!r}"
            )
        # Keep the canonical order so the split of W_up's output is well defined.
        self.targets = [t for t in ALL_TARGETS if t in self.targets]
        if not isinstance(self.static_bias, bool):
            raise ValueError(f"static_bias must be true or false, got {self.static_bias!r}")
        if self.scale_form not in SCALE_FORMS:
            raise ValueError(f"scale_form must be one of {', '.join(SCALE_FORMS)}; got {self.scale_form!r}")
        if self.generator_input not in GENERATOR_INPUTS:
            raise ValueError(f"generator_input must be one of {', '.join(GENERATOR_INPUTS)}; got {self.generator_input!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}; got {self.granularity!r}")
        if self.granularity == "head" and not set(self.targets) & set(HEAD_TARGETS):
            raise ValueError(f"granularity 'head' needs an attention target ({', '.join(HEAD_TARGETS)}); the targets "
                             f"are {self.targets!r}")
        if self.pool_layer is not None and (not isinstance(self.pool_layer, int) or isinstance(self.pool_layer, bool)
                                            or self.pool_layer < 0):
            raise ValueError(f"pool_layer must be a non-negative layer index or null, got {self.pool_layer!r}")
        if self.layers_to_transform is not None:
            self.layers_to_transform = sorted({int(i) for i in self.layers_to_transform})
            if not self.layers_to_transform or self.layers_to_transform[0] < 0:
                raise ValueError("layers_to_transform must list non-negative layer indices")
        if self.peft_type != PEFT_TYPE:
            raise ValueError(f"not a PARA adapter config (peft_type={self.peft_type!r})")
        if self.format_version > FORMAT_VERSION:
            raise ValueError(
                f"adapter format version {self.format_version} is newer than this library supports ({FORMAT_VERSION})"
            )

    def variant(self) -> dict[str, Any]:
        """The settings in which this adapter departs from the paper's form (empty for the paper's PARA)."""
        return {key: getattr(self, key) for key, value in PAPER_FORM.items() if getattr(self, key) != value}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["base_model_variant"] is None:
            del data["base_model_variant"]  # configs of published backbones keep the keys they always had
        for key, value in PAPER_FORM.items():  # the paper's form keeps the keys its adapters always had
            if key != "targets" and data[key] == value:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ParaConfig":
        data = dict(data)
        if "peft_type" in data and str(data["peft_type"]).upper() != PEFT_TYPE:  # before its keys are judged
            raise ValueError(f"not a PARA adapter config (peft_type={data['peft_type']!r}); a LoRA adapter is served "
                             "by the engine or loaded with peft")
        generic = {key: data.pop(key) for key in PEFT_GENERIC_KEYS if key in data}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys in PARA adapter config: {', '.join(unknown)}")
        config = cls(**data)
        check_generic_keys(generic)
        return config

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "ParaConfig":
        return cls.from_dict(read_adapter_config(directory)[1])


# The paper's form of the variant settings (``ParaConfig``'s defaults; the ``paper`` preset of ``para train``).
PAPER_FORM: dict[str, Any] = {"targets": list(TARGETS), "static_bias": False, "scale_form": "linear",
                              "generator_input": "normed", "pool_layer": None,
                              "granularity": "channel"}


def width_of(target: str, dims: dict[str, int]) -> int:
    """The width of ``target``'s activation on a backbone of ``dims``."""
    return dims[TARGET_WIDTH[target]]


def generated_width(config: "ParaConfig", target: str, dims: dict[str, int], head_dim: int) -> int:
    """How many values a generator of ``config`` produces for ``target``: one per channel, or one per head."""
    width = width_of(target, dims)
    return width // head_dim if config.granularity == "head" and target in HEAD_TARGETS else width


def read_adapter_config(directory: str | Path) -> tuple[Path, dict]:
    """``(path, contents)`` of ``directory``'s adapter_config.json; a missing file, invalid JSON or a value
    that is not an object is a clear error."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return path, data


def check_generic_keys(generic: dict[str, Any]) -> None:
    """Refuse generic peft values that contradict a PARA adapter; warn, by name, about the ones not used."""
    task_type = generic.get("task_type")
    if task_type is not None and task_type != TASK_TYPE:
        raise ValueError(f"task_type {task_type!r}: PARA adapts causal language models only ({TASK_TYPE!r})")
    inference_mode = generic.get("inference_mode")
    if inference_mode is not None and not isinstance(inference_mode, bool):
        raise ValueError(f"inference_mode must be true or false, got {inference_mode!r}")
    unused = {k: v for k, v in generic.items() if v is not None and k != "task_type"}
    if unused:
        listed = ", ".join(f"{k}={v!r}" for k, v in unused.items())
        warnings.warn(
            f"adapter config keys not used by PARA: {listed} (trainability is chosen when loading, with "
            "is_trainable; the backbone is named by base_model_name_or_path and base_model_variant)",
            PeftKeyWarning,
            stacklevel=3,
        )
