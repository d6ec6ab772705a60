"""Where PARA attaches inside each supported decoder architecture."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """Module paths inside one decoder layer.

    ``reader`` is the module whose *input* the generator pools (the layer's
    normalised attention input). ``q`` is where the query is scaled: the
    query projection, or, for architectures that RMS-normalise each query
    head right after the projection (Qwen3, Gemma 3), the output of that
    norm, since a per-head RMS norm would otherwise divide out part of the
    adjustment. ``q_layout`` is the axis order of that output; ``k`` (a
    variant's target) follows ``q``, with the same layout. ``o`` and ``down``
    are the modules whose *input* a variant scales.
    """

    reader: str = "self_attn.q_proj"
    q: str = "self_attn.q_proj"
    v: str = "self_attn.v_proj"
    up: str = "mlp.up_proj"
    q_layout: str = "btd"  # btd: [batch, time, width]; bthd / bhtd: per-head tensors
    k: str = "self_attn.k_proj"
    o: str = "self_attn.o_proj"
    down: str = "mlp.down_proj"


_PLAIN = ArchSpec()
ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _PLAIN,
    "mistral": _PLAIN,
    "qwen2": _PLAIN,
    "gemma": _PLAIN,
    "gemma2": _PLAIN,
    "qwen3": ArchSpec(q="self_attn.q_norm", q_layout="bthd", k="self_attn.k_norm"),
    "gemma3_text": ArchSpec(q="self_attn.q_norm", q_layout="bhtd", k="self_attn.k_norm"),
}


class UnsupportedArchitectureError(ValueError):
    pass


def arch_spec(model: nn.Module) -> tuple[str, ArchSpec]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"PARA does not support model_type {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return model_type, ARCHITECTURES[model_type]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (``model.model.layers`` in every supported family)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise UnsupportedArchitectureError(f"{type(model).__name__} has no model.layers; pass a *ForCausalLM model")
    return layers


def set_submodule(layer: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = layer.get_submodule(parent_path) if parent_path else layer
    setattr(parent, name, module)


def layer_dims(model: nn.Module, spec: ArchSpec) -> dict[str, int]:
    """Widths the generators need: hidden (pooled input), q, v (GQA: kv heads × head dim), up."""
    layer = decoder_layers(model)[0]
    reader = layer.get_submodule(spec.reader)
    return {
        "hidden": reader.in_features,
        "q": layer.get_submodule("self_attn.q_proj").out_features,
        "v": layer.get_submodule(spec.v).out_features,
        "up": layer.get_submodule(spec.up).out_features,
        "num_layers": len(decoder_layers(model)),
    }
