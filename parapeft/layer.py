"""How PARA hooks into one decoder layer.

The target modules (q_proj or q_norm, v_proj, up_proj; for the variants also
k_proj or k_norm, o_proj, down_proj) are replaced by ``ScaledModule``
wrappers. The wrapper around the *reader* (q_proj) hands its input — the
layer's normalised attention input — to the layer's ``ParaLayer``, which pools
the prompt positions and computes this layer's vectors for the current pass;
every wrapper then multiplies its module's output (o_proj and down_proj: its
input) by the multiplier of its row. Adapters that pool the residual stream
instead read what a forward pre-hook on the decoder layer kept. Because the
reader sees the layer input, the vectors of layer l already reflect the
adjustments of the layers below (except with ``pool_layer``, where every
generator reads one layer's input from a frozen pass of the backbone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .generator import LayerGenerators

# Modes of a forward pass.
COMPUTE = "compute"  # compute vectors from this pass's prompt positions
PREFILL = "prefill"  # first pass of generate: compute, then switch to DECODE
DECODE = "decode"  # reuse the vectors computed at prefill (cached generation)
BARE = "bare"  # the frozen backbone's own prompt pass for adapters that pool from deeper: nothing is scaled


@dataclass
class PassContext:
    """What the current forward pass needs to know, shared by every layer."""

    mode: str | None = None
    prompt_mask: torch.Tensor | None = None  # [batch, time] bool
    names: list[str] = field(default_factory=list)  # distinct adapters of the batch
    row_slots: torch.Tensor | None = None  # [batch] index into names, -1 = bare backbone; None = all names[0]
    depth: int = 0  # > 0 while a ParaModel forward or generate is running (it prepared this pass itself)
    backbone_calls: int = 0  # > 0 while the wrapped backbone's own forward runs (its pre-hook prepared the pass)
    # Inputs of deeper layers from the frozen prompt pass ("layer<L>:normed" / ":residual" -> [batch, time, hidden])
    deep: dict[str, torch.Tensor] = field(default_factory=dict)

    def expanded(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt mask and row slots for ``batch`` rows: generation repeats each row for beams / return sequences."""
        assert self.prompt_mask is not None
        rows = self.prompt_mask.shape[0]
        if batch == rows:
            return self.prompt_mask, self.row_slots
        if batch % rows:
            raise RuntimeError(f"batch of {batch} rows does not expand the {rows} prompts of this pass")
        factor = batch // rows
        slots = None if self.row_slots is None else self.row_slots.repeat_interleave(factor)
        return self.prompt_mask.repeat_interleave(factor, dim=0), slots


class ParaLayer:
    """Per-layer state: the generators and the vectors of the current pass (a plain object, not a module)."""

    def __init__(self, index: int, generators: LayerGenerators, context: PassContext):
        self.index = index
        self.generators = generators
        self.context = context
        self.scales: dict[str, torch.Tensor] | None = None
        self.residual: torch.Tensor | None = None  # the decoder layer's input of this pass (residual-input adapters)

    def keep_residual(self, hidden_states: torch.Tensor) -> None:
        """Called before the decoder layer runs: keep its input when an adapter of the pass pools it."""
        ctx = self.context
        wanted = ctx.mode not in (None, DECODE, BARE) and "residual" in self.generators.inputs_read(ctx.names)
        self.residual = hidden_states if wanted else None

    def observe(self, x: torch.Tensor) -> None:
        ctx = self.context
        if ctx.mode is None:
            raise RuntimeError(
                "a PARA-wrapped model must be called through its ParaModel (forward or generate), or its backbone "
                "with labels (-100 on the prompt), so that PARA knows which positions are the prompt"
            )
        if ctx.mode == BARE:
            self.scales = None
            return
        if ctx.mode == DECODE:
            if self.scales is not None and next(iter(self.scales.values())).shape[0] != x.shape[0]:
                raise RuntimeError("batch size changed after prefill; PARA vectors are per prompt")
            return
        prompt_mask, row_slots = ctx.expanded(x.shape[0])
        if prompt_mask.shape[1] != x.shape[1]:
            raise RuntimeError(
                f"the prompt mask covers {prompt_mask.shape[1]} positions but the pass has {x.shape[1]}: "
                "PARA needs the whole prompt in one prefill pass (no chunked prefill)"
            )
        inputs = {"normed": x}
        for key, tensor in ctx.deep.items():  # from the prompt pass: one row per prompt, repeated as the batch is
            inputs[key] = tensor if tensor.shape[0] == x.shape[0] else tensor.repeat_interleave(
                x.shape[0] // tensor.shape[0], dim=0)
        if self.residual is not None:
            inputs["residual"] = self.residual
        vectors = self.generators.vectors(inputs, prompt_mask, ctx.names, row_slots)
        self.residual = None
        self.scales = None if vectors is None else {t: (1.0 + v).to(x.dtype) for t, v in vectors.items()}

    def scale(self, target: str) -> torch.Tensor | None:
        return None if self.scales is None else self.scales.get(target)


def _broadcast(scale: torch.Tensor, output: torch.Tensor, layout: str) -> torch.Tensor:
    batch = scale.shape[0]
    if layout == "btd":
        return scale.view(batch, 1, -1)
    if layout == "bthd":
        return scale.view(batch, 1, output.shape[2], output.shape[3])
    if layout == "bhtd":
        return scale.view(batch, output.shape[1], 1, output.shape[3])
    raise ValueError(f"unknown layout {layout!r}")


class ScaledModule(nn.Module):
    """Wraps a target module: optionally feeds its input to the generator, then scales its output (or, with
    ``scale_input``, its input)."""

    def __init__(self, base: nn.Module, layer: ParaLayer, target: str | None, reads_input: bool, layout: str = "btd",
                 scale_input: bool = False):
        super().__init__()
        self.base_layer = base
        self.target = target
        self.reads_input = reads_input
        self.layout = layout
        self.scale_input = scale_input
        # A plain attribute, not a submodule: the generators are registered once, on the ParaModel.
        object.__setattr__(self, "para_layer", layer)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.reads_input:
            self.para_layer.observe(x)
        if self.scale_input:  # the input of a projection (o_proj, down_proj): [batch, tokens, width] in every layout
            scale = self.para_layer.scale(self.target)
            return self.base_layer(x if scale is None else x * _broadcast(scale, x, "btd"), *args, **kwargs)
        out = self.base_layer(x, *args, **kwargs)
        scale = self.para_layer.scale(self.target) if self.target else None
        if scale is None:
            return out
        return out * _broadcast(scale, out, self.layout)
