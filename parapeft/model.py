"""``ParaModel``: a frozen Hugging Face causal LM with one or more PARA adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .adapter_io import AdapterLoadError, check_compatible, load_weights, save_weights
from .architectures import arch_spec, decoder_layers, layer_dims, set_submodule
from .config import ALL_TARGETS, ParaConfig, generated_width, width_of
from .generator import LayerGenerators
from .hub import resolve_adapter_dir
from .layer import BARE, COMPUTE, DECODE, PREFILL, ParaLayer, PassContext, ScaledModule
from .peft_surface import PeftCompatible

BASE_ADAPTER = "__base__"  # per-row adapter name meaning "no adapter" (the name HF peft uses too)


class _PromptPassDone(Exception):
    """Ends the frozen prompt pass of pooling from deeper once the deepest layer it reads has its input."""


def read_adapter_config(adapter_dir: str | Path) -> ParaConfig:
    try:
        return ParaConfig.load(adapter_dir)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise AdapterLoadError(f"cannot read the adapter config in {adapter_dir}: {err}") from err


def adapter_shapes(config: ParaConfig, dims: dict[str, int], head_dim: int | None = None) -> dict[str, tuple[int, ...]]:
    """The tensors a saved adapter with ``config`` holds on a backbone of ``dims`` (and attention heads of
    ``head_dim`` channels, which per-head vectors need), and their shapes."""
    hidden = dims["hidden"]
    if config.granularity == "head" and head_dim is None:
        raise AdapterLoadError("per-head PARA vectors need the backbone's head dimension")
    out = sum(generated_width(config, t, dims, head_dim or 1) for t in config.targets)
    shapes = {}
    for index in config.layers_to_transform or range(dims["num_layers"]):
        shapes[f"layers.{index}.down.weight"] = (config.r, hidden)
        shapes[f"layers.{index}.up.weight"] = (out, config.r)
        if config.static_bias:
            shapes[f"layers.{index}.up.bias"] = (out,)
        if config.pooler == "attention":
            shapes[f"layers.{index}.scorer"] = (hidden,)
    return shapes


def _refuse_packed_rows(attention_mask: torch.Tensor, position_ids: torch.Tensor | None) -> None:
    """Refuse rows that pack several sequences (TRL's ``packing`` or ``padding_free``: positions that start again
    inside a row). PARA pools one prompt per row, so the sequences of a packed row would share one set of vectors."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[-1] < 2:
        return
    positions = position_ids.expand(attention_mask.shape[0], -1)
    real = attention_mask.bool()
    restart = (positions[:, 1:] <= positions[:, :-1]) & real[:, 1:] & real[:, :-1]  # padding may sit anywhere
    if bool(restart.any()):
        raise ValueError("a row packs several sequences (its position_ids start again inside it): PARA computes "
                         "one set of vectors per row from that row's prompt, so packed or padding-free batches are "
                         "not supported; give one example per row (TRL: packing=False, padding_free=False)")


class ParaModel(PeftCompatible):
    """Wraps a supported causal LM: backbone frozen, PARA generators in every (chosen) layer.

    Vectors come from the prompt only: in ``forward`` the prompt is
    ``prompt_mask`` if given, else the non-completion positions of
    ``completion_mask`` (TRL's name), else the non-padding positions whose
    label is -100; in ``generate`` it is the non-padding prompt, and the
    vectors computed at prefill are reused for every new token. A trainer that
    calls the backbone itself with ``labels`` gets the same prompt (a forward
    pre-hook on the backbone reads them).

    It is a ``peft.PeftModel`` to the libraries that check (see
    :mod:`.peft_surface`), so ``transformers.Trainer`` and ``trl.SFTTrainer``
    train it unchanged and their checkpoints hold the adapter alone.
    """

    def __init__(self, model: nn.Module, config: ParaConfig, adapter_name: str = "default"):
        super().__init__()
        self.model_type, self.spec = arch_spec(model)
        self.base_model = model
        for param in model.parameters():
            param.requires_grad_(False)
        self.dims = layer_dims(model, self.spec)
        widths = {t: width_of(t, self.dims) for t in ALL_TARGETS}
        backbone = model.config
        self.head_dim = getattr(backbone, "head_dim", None) or backbone.hidden_size // backbone.num_attention_heads
        self.layers = nn.ModuleList(LayerGenerators(self.dims["hidden"], widths, self.head_dim)
                                    for _ in range(self.dims["num_layers"]))
        self.active_adapter = adapter_name
        self._context = PassContext()
        self._states: list[ParaLayer] = []
        self._layer_hooks: list = []  # decoder-layer pre-hooks, added when a residual-input adapter arrives
        self._wrap_targets()
        self._hooks = [
            model.register_forward_pre_hook(self._before_base_forward, with_kwargs=True),
            model.register_forward_hook(self._after_base_forward, always_call=True),
        ]
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        if isinstance(decoder, nn.Module) and decoder is not model:
            self._hooks.append(decoder.register_forward_pre_hook(self._before_decoder_forward))
        self.add_adapter(adapter_name, config)

    # ------------------------------------------------------------------ wiring
    def _wrap_targets(self) -> None:
        spec = self.spec
        for index, layer in enumerate(decoder_layers(self.base_model)):
            state = ParaLayer(index, self.layers[index], self._context)
            self._states.append(state)
            if spec.reader == spec.q:
                set_submodule(layer, spec.q, ScaledModule(layer.get_submodule(spec.q), state, "q", True, spec.q_layout))
            else:
                set_submodule(layer, spec.reader, ScaledModule(layer.get_submodule(spec.reader), state, None, True))
                set_submodule(layer, spec.q, ScaledModule(layer.get_submodule(spec.q), state, "q", False, spec.q_layout))
            set_submodule(layer, spec.v, ScaledModule(layer.get_submodule(spec.v), state, "v", False))
            set_submodule(layer, spec.up, ScaledModule(layer.get_submodule(spec.up), state, "up", False))

    def _wrap_variant_targets(self, config: ParaConfig) -> None:
        """Wrap the modules a variant's extra targets (k, o, down) need, and keep the residual stream for
        adapters that pool it; once per backbone, when the first adapter that needs them arrives."""
        spec = self.spec
        for layer, state in zip(decoder_layers(self.base_model), self._states):
            for target, path, scale_input in (("k", spec.k, False), ("o", spec.o, True), ("down", spec.down, True)):
                module = layer.get_submodule(path)
                if target in config.targets and not isinstance(module, ScaledModule):
                    # k's output has q's layout (k_norm where q has q_norm); o and down scale their [b, t, d] inputs
                    layout = spec.q_layout if target == "k" else "btd"
                    set_submodule(layer, path, ScaledModule(module, state, target, False, layout, scale_input))
        if config.generator_input == "residual" and not self._layer_hooks:
            for layer, state in zip(decoder_layers(self.base_model), self._states):
                def keep(module, args, kwargs, state=state):
                    state.keep_residual(args[0] if args else kwargs["hidden_states"])

                self._layer_hooks.append(layer.register_forward_pre_hook(keep, with_kwargs=True))

    def _before_base_forward(self, module, args, kwargs):
        """A backbone called directly (not from this wrapper): its ``labels`` say where the prompt is."""
        self._context.backbone_calls += 1  # undone by _after_base_forward, which runs even if the forward raises
        if self._context.depth:
            return None  # forward or generate of this ParaModel prepared the pass
        labels = kwargs.get("labels")
        if labels is None:
            self._context.mode = None  # never reuse an earlier pass's prompt: the reader raises a named error
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        batch, length, device = self._batch_shape(input_ids, kwargs.get("inputs_embeds"))
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=device)
        self._prepare(batch, attention_mask, labels == -100, self._disabled_names(batch), COMPUTE)
        self._probe(input_ids, kwargs.get("inputs_embeds"), attention_mask, kwargs.get("position_ids"))
        return None

    def _disabled_names(self, batch: int) -> list[str] | None:
        """Per-row adapter names inside ``disable_adapter()`` (every row bare), else None (the active adapter)."""
        return [BASE_ADAPTER] * batch if self._adapters_disabled else None

    def _before_decoder_forward(self, module, args):
        """The backbone's inner decoder (``base_model.model``) called on its own, outside any pass this wrapper or
        the backbone's hook prepared: it says nothing of the prompt, so the layers refuse by name instead of
        pooling with the prompt mask of an earlier pass."""
        if not self._context.depth and not self._context.backbone_calls:
            self._context.mode = None

    def _after_base_forward(self, module, args, output):
        self._context.backbone_calls -= 1
        # The first pass of ``generate`` is the prefill; later passes decode with the prefill's vectors.
        if self._context.mode == PREFILL:
            self._context.mode = DECODE
        # ``deep`` (the prompt pass's tensors) stays until the next pass replaces it: gradient checkpointing runs
        # the layers of this pass again during the backward.
        return None

    def _probe(self, input_ids, inputs_embeds, attention_mask, position_ids) -> None:
        """For adapters that pool from deeper (``pool_layer``): the frozen backbone's pass over the prompt, up to
        the deepest layer they read, keeping those layers' inputs (normalised by the layer's input norm, or the
        residual stream itself)."""
        ctx = self._context
        wanted = set().union(*(layer.inputs_read(ctx.names) for layer in self.layers))
        deep = sorted(key for key in wanted if key.startswith("layer"))
        ctx.deep = {}
        if not deep or ctx.mode in (None, DECODE):
            return
        layers = decoder_layers(self.base_model)
        needed = {int(key.removeprefix("layer").split(":")[0]) for key in deep}
        inputs: dict[int, torch.Tensor] = {}

        def keep(index: int):
            def hook(module, args, kwargs):
                inputs[index] = args[0] if args else kwargs["hidden_states"]
                if index == max(needed):
                    raise _PromptPassDone  # the layers above are not needed
            return hook

        hooks = [layers[index].register_forward_pre_hook(keep(index), with_kwargs=True) for index in needed]
        mode, ctx.mode = ctx.mode, BARE
        ctx.depth += 1  # this wrapper's own pass through the inner decoder
        try:
            with torch.no_grad():
                self.base_model.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                      position_ids=position_ids, use_cache=False)
        except _PromptPassDone:
            pass
        finally:
            ctx.depth -= 1
            ctx.mode = mode
            for hook in hooks:
                hook.remove()
        for key in deep:
            index, kind = key.removeprefix("layer").split(":")
            hidden = inputs[int(index)]
            with torch.no_grad():
                ctx.deep[key] = layers[int(index)].input_layernorm(hidden) if kind == "normed" else hidden

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    # ---------------------------------------------------------------- adapters
    def _transformed_layers(self, config: ParaConfig) -> list[int]:
        return config.layers_to_transform or list(range(self.dims["num_layers"]))

    def add_adapter(self, adapter_name: str, config: ParaConfig) -> None:
        """Add a fresh adapter (``W_up`` = 0: it reproduces the backbone exactly until trained)."""
        if not adapter_name or adapter_name == BASE_ADAPTER or "." in adapter_name:
            raise ValueError(f"invalid adapter name {adapter_name!r} (non-empty, no '.', not {BASE_ADAPTER!r})")
        if adapter_name in self.peft_config:
            raise ValueError(f"an adapter named {adapter_name!r} is already loaded")
        check_compatible(config, self.model_type, self.dims, repr(adapter_name))
        config.model_type = self.model_type
        config.dims = dict(self.dims)
        if config.base_model_name_or_path is None:
            from .backbones.identity import backbone_identity

            loaded_from = getattr(self.base_model.config, "_name_or_path", None)
            config.base_model_name_or_path, config.base_model_variant = backbone_identity(loaded_from)
        device = self.base_model.get_input_embeddings().weight.device
        self._wrap_variant_targets(config)
        for index in self._transformed_layers(config):
            self.layers[index].add(adapter_name, config, device)
        self.peft_config[adapter_name] = config

    def delete_adapter(self, adapter_name: str) -> None:
        self._require(adapter_name)
        for layer in self.layers:
            if adapter_name in layer.adapters:
                del layer.adapters[adapter_name]
        del self.peft_config[adapter_name]
        if self.active_adapter == adapter_name:
            self.active_adapter = next(iter(self.peft_config), None)

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        """Make ``adapter_name`` the one used when no per-row ``adapter_names`` are given (frozen if ``inference_mode``)."""
        self._require(adapter_name)
        self.active_adapter = adapter_name
        if inference_mode:
            self._set_trainable(adapter_name, False)

    def _require(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            loaded = ", ".join(self.peft_config) or "none"
            raise KeyError(f"unknown adapter {adapter_name!r}; loaded: {loaded}")

    def adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        name = adapter_name or self.active_adapter
        self._require(name)
        state = {}
        for index, layer in enumerate(self.layers):
            if name in layer.adapters:
                for key, tensor in layer.adapters[name].state_dict().items():
                    state[f"layers.{index}.{key}"] = tensor
        return state

    def _expected_shapes(self, config: ParaConfig) -> dict[str, tuple[int, ...]]:
        return adapter_shapes(config, self.dims, self.head_dim)

    def save_pretrained(
        self,
        save_directory: str | Path,
        adapter_name: str | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
        safe_serialization: bool = True,
        task: str | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Write ``adapter_config.json``, ``adapter_model.safetensors`` and a model card (``README.md``) of one adapter.

        ``adapter_name`` defaults to the active adapter. ``state_dict`` is the whole wrapper's state as a
        trainer gathered it (``transformers.Trainer`` passes one under FSDP or DeepSpeed); the adapter's
        tensors are taken from it. ``task`` and ``metrics`` go into the card's metadata.
        """
        from .model_card import write_model_card

        if not safe_serialization:
            raise ValueError("PARA adapters are saved as safetensors only (safe_serialization=False was asked)")
        name = adapter_name or self.active_adapter
        self._require(name)
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.adapter_state_dict(name) if state_dict is None else self._adapter_from(state_dict, name),
                     directory)
        self.peft_config[name].save(directory)
        write_model_card(directory, self.peft_config[name], task=task, metrics=metrics)

    def _adapter_from(self, state_dict: dict[str, torch.Tensor], adapter_name: str) -> dict[str, torch.Tensor]:
        """The saved form (``layers.{i}.{tensor}``) of one adapter's entries in a full wrapper state dict."""
        marker = f".adapters.{adapter_name}."
        picked = {key.replace(marker, ".", 1): value for key, value in state_dict.items()
                  if key.startswith("layers.") and marker in key}
        expected = self._expected_shapes(self.peft_config[adapter_name])
        if set(picked) != set(expected):
            raise AdapterLoadError(f"the state dict given to save_pretrained lacks adapter {adapter_name!r}'s tensors")
        return picked

    def push_to_hub(self, repo_id: str, adapter_name: str | None = None, private: bool | None = None,
                    token: str | None = None, commit_message: str = "Upload PARA adapter", task: str | None = None,
                    metrics: dict[str, float] | None = None) -> str:
        """Save one adapter (config, weights, card) and upload it to the Hub repository ``repo_id``; returns its URL."""
        from .hub import push_adapter

        return push_adapter(lambda directory: self.save_pretrained(directory, adapter_name, task=task, metrics=metrics),
                            repo_id, private=private, token=token, commit_message=commit_message)

    def load_adapter(self, adapter_dir: str | Path, adapter_name: str, is_trainable: bool = False,
                     revision: str | None = None) -> None:
        """Load a saved adapter (a directory or a Hub id) under ``adapter_name``.

        When ``adapter_name`` is already loaded its weights are replaced in place (the parameters stay the
        same objects, so an optimizer holding them continues): that is how ``transformers.Trainer`` resumes
        a run and restores its best checkpoint. On any error nothing is left half-loaded.
        """
        config, tensors = self.read_adapter(adapter_dir, revision=revision)
        if adapter_name in self.peft_config:
            self._replace_weights(adapter_name, config, tensors, is_trainable)
        else:
            self.add_adapter_weights(adapter_name, config, tensors, is_trainable)

    def _replace_weights(self, adapter_name: str, config: ParaConfig, tensors: dict[str, torch.Tensor],
                         is_trainable: bool) -> None:
        current = self.peft_config[adapter_name]
        shape_keys = ("r", "pooler", "activation", "targets", "layers_to_transform", "static_bias", "scale_form",
                      "generator_input", "pool_layer", "granularity")
        differs = [k for k in shape_keys if getattr(current, k) != getattr(config, k)]
        if differs:
            raise AdapterLoadError(f"cannot load into adapter {adapter_name!r}: the saved one differs in {', '.join(differs)}")
        self._copy_weights(adapter_name, current, tensors)
        self._set_trainable(adapter_name, is_trainable)

    def _set_trainable(self, adapter_name: str, is_trainable: bool) -> None:
        for layer in self.layers:
            if adapter_name in layer.adapters:
                layer.adapters[adapter_name].requires_grad_(is_trainable)

    def read_adapter(self, adapter_dir: str | Path, revision: str | None = None) -> tuple[ParaConfig, dict[str, torch.Tensor]]:
        """Config and weights of a saved adapter, checked against this backbone, without attaching it."""
        directory = resolve_adapter_dir(adapter_dir, revision=revision)
        config = read_adapter_config(directory)
        check_compatible(config, self.model_type, self.dims, str(adapter_dir))
        return config, load_weights(directory, self._expected_shapes(config))

    def add_adapter_weights(
        self, adapter_name: str, config: ParaConfig, tensors: dict[str, torch.Tensor], is_trainable: bool = False
    ) -> None:
        """Attach an adapter from tensors already in memory (as ``adapter_state_dict`` returns them)."""
        expected = self._expected_shapes(config)
        if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
            raise AdapterLoadError(f"weights of adapter {adapter_name!r} do not match its config")
        self.add_adapter(adapter_name, config)
        self._copy_weights(adapter_name, config, tensors)
        self._set_trainable(adapter_name, is_trainable)

    def _copy_weights(self, adapter_name: str, config: ParaConfig, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for index in self._transformed_layers(config):
                generator = self.layers[index].adapters[adapter_name]
                for key, param in generator.state_dict(keep_vars=True).items():
                    param.copy_(tensors[f"layers.{index}.{key}"])

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        adapter_dir: str | Path,
        adapter_name: str = "default",
        is_trainable: bool = False,
        revision: str | None = None,
    ) -> "ParaModel":
        """Attach a saved adapter to ``model``; inference mode (eval, no gradients) unless ``is_trainable``.

        ``adapter_dir`` is a local directory or a Hugging Face Hub repository id (read through the Hub's
        cache: with ``HF_HUB_OFFLINE=1`` only the cache is used).
        """
        directory = resolve_adapter_dir(adapter_dir, revision=revision)
        config = read_adapter_config(directory)
        para = cls(model, config, adapter_name)
        try:
            para._copy_weights(adapter_name, config, load_weights(directory, para._expected_shapes(config)))
        except Exception:
            para.unload()  # leave the caller's model as it was
            raise
        para.layers.requires_grad_(is_trainable)
        if not is_trainable:
            para.eval()
        return para

    # -------------------------------------------------------------- counting
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    def unload(self) -> nn.Module:
        """Remove PARA and give back the plain backbone (its weights were never changed)."""
        for hook in self._hooks + self._layer_hooks:
            hook.remove()
        spec = self.spec
        for layer in decoder_layers(self.base_model):
            for path in {spec.reader, spec.q, spec.k, spec.v, spec.o, spec.up, spec.down}:
                wrapper = layer.get_submodule(path)
                if isinstance(wrapper, ScaledModule):
                    set_submodule(layer, path, wrapper.base_layer)
        return self.base_model

    # ---------------------------------------------------------------- passes
    def _prepare(
        self,
        batch: int,
        attention_mask: torch.Tensor,
        prompt_mask: torch.Tensor,
        adapter_names: Sequence[str] | None,
        mode: str,
    ) -> None:
        if adapter_names is None:
            if self.active_adapter is None:
                raise RuntimeError("no adapter is loaded")
            names, row_slots = [self.active_adapter], None
        else:
            if len(adapter_names) != batch:
                raise ValueError(f"adapter_names has {len(adapter_names)} entries for a batch of {batch}")
            names = []
            for name in adapter_names:
                if name != BASE_ADAPTER:
                    self._require(name)
                    if name not in names:
                        names.append(name)
            if len(names) == 1 and all(n != BASE_ADAPTER for n in adapter_names):
                row_slots = None
            else:
                slots = [names.index(n) if n != BASE_ADAPTER else -1 for n in adapter_names]
                row_slots = torch.tensor(slots, device=attention_mask.device)
        prompt = attention_mask.bool() & prompt_mask.bool()
        if names and mode != DECODE and not bool(prompt.any(dim=1).all()):
            raise ValueError(
                "every row needs at least one prompt position (non-padding, label -100 or prompt_mask); a loss on "
                "every token leaves PARA no prompt to read: with TRL, train on prompt-completion data or set "
                "assistant_only_loss=True"
            )
        ctx = self._context
        ctx.mode, ctx.prompt_mask, ctx.names, ctx.row_slots = mode, prompt, names, row_slots

    @staticmethod
    def _batch_shape(input_ids, inputs_embeds) -> tuple[int, int, torch.device]:
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None:
            raise ValueError("pass input_ids or inputs_embeds")
        return ref.shape[0], ref.shape[1], ref.device

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        adapter_names: Sequence[str] | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Any = None,
        completion_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """Like the backbone's forward, plus ``prompt_mask`` / ``completion_mask`` and per-row ``adapter_names``.

        With a non-empty ``past_key_values`` the pass continues a cached
        sequence and reuses the vectors of the pass that filled the cache.
        In training mode the prompt must be given (``labels``, ``prompt_mask``
        or ``completion_mask``): a trainer that drops the labels before the
        forward (label smoothing, a custom loss) would otherwise let the
        response reach the pooler.
        """
        batch, length, device = self._batch_shape(input_ids, inputs_embeds)
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=device)
        cached = past_key_values is not None and past_key_values.get_seq_length() > 0
        if cached:
            mode, prompt = DECODE, attention_mask
        else:
            mode = COMPUTE
            if prompt_mask is not None:
                prompt = prompt_mask
            elif completion_mask is not None:
                prompt = completion_mask == 0
            elif labels is not None:
                prompt = labels == -100
            elif self.base_model.training and torch.is_grad_enabled():  # a trainer's step (it calls .train())
                raise ValueError(
                    "PARA trains on the prompt's vectors only and this training forward does not say where the "
                    "prompt is: pass labels (-100 on the prompt), prompt_mask or completion_mask"
                )
            else:
                prompt = torch.ones_like(attention_mask)
        if mode == COMPUTE:
            _refuse_packed_rows(attention_mask, kwargs.get("position_ids"))
        if adapter_names is None:
            adapter_names = self._disabled_names(batch)
        self._prepare(batch, attention_mask, prompt, adapter_names, mode)
        self._probe(input_ids, inputs_embeds, attention_mask, kwargs.get("position_ids"))
        self._context.depth += 1
        try:
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=labels,
                inputs_embeds=inputs_embeds,
                past_key_values=past_key_values,
                **kwargs,
            )
        finally:
            self._context.depth -= 1

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        adapter_names: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        """``generate`` of the backbone; vectors are computed once at prefill from the prompt and reused."""
        batch, length, device = self._batch_shape(input_ids, kwargs.get("inputs_embeds"))
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=device)
        prompt = prompt_mask if prompt_mask is not None else torch.ones_like(attention_mask)
        if adapter_names is None:
            adapter_names = self._disabled_names(batch)
        self._prepare(batch, attention_mask, prompt, adapter_names, PREFILL)
        # generate's prefill numbers positions from the attention mask (left padding) unless given, and so does
        # the prompt pass
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        self._probe(input_ids, kwargs.get("inputs_embeds"), attention_mask, positions)
        self._context.depth += 1
        try:
            return self.base_model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            self._context.depth -= 1
            self._context.mode = None
            self._release_scales()

    def _para_layers(self) -> list[ParaLayer]:
        return self._states

    def _release_scales(self) -> None:
        for state in self._para_layers():
            state.scales = state.residual = None
        self._context.deep = {}

    def last_vectors(self) -> list[dict[str, torch.Tensor] | None]:
        """Per layer, the multipliers (``1 + l``, or ``1 + form(l)`` under another ``scale_form``; one row per
        sequence) that the last ``forward`` applied."""
        return [state.scales for state in self._para_layers()]


def get_para_model(model: nn.Module, config: ParaConfig, adapter_name: str = "default") -> ParaModel:
    """Freeze ``model`` and attach a fresh PARA adapter (the analogue of peft's ``get_peft_model``)."""
    return ParaModel(model, config, adapter_name)
