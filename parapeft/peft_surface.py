"""The part of peft's ``PeftModel`` interface that transformers' ``Trainer``, TRL and Accelerate rely on.

Those libraries decide how to treat a model by ``isinstance(model, peft.PeftModel)``: an adapter model is
saved and resumed through its own ``save_pretrained`` / ``load_adapter`` (``adapter_config.json`` +
``adapter_model.safetensors``, never the backbone), and TRL patches ``get_base_model()`` (the causal LM)
with its fused LM head instead of the wrapper. ``ParaModel`` therefore derives from ``PeftModel`` without
running its constructor (PARA is not one of peft's tuners, there is no tuner model in between): it answers
the properties those libraries read, and every inherited peft method that assumes a peft tuner is refused
by name here rather than left to fail obscurely or do the wrong thing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, NoReturn

from peft import PeftModel
from torch import nn


class NotSupportedForParaError(NotImplementedError):
    """A peft ``PeftModel`` method that has no meaning for a PARA adapter."""


def _refuse(name: str, why: str) -> NoReturn:
    raise NotSupportedForParaError(f"ParaModel.{name} is not supported: {why}")


class PeftCompatible(PeftModel):
    """Base of ``ParaModel``: an ``nn.Module`` that peft-aware trainers recognise as an adapter model."""

    def __init__(self) -> None:
        nn.Module.__init__(self)  # not PeftModel.__init__: it would build one of peft's own tuners
        self.__dict__["_para_configs"] = {}
        self.__dict__["_adapters_disabled"] = False
        self.special_peft_forward_args = {"adapter_names"}  # read by peft utilities that inspect forward kwargs

    # ---------------------------------------------------------------- what trainers read
    @property
    def peft_config(self) -> dict[str, Any]:
        """Adapter name -> ``ParaConfig`` of every loaded adapter."""
        return self.__dict__["_para_configs"]

    @peft_config.setter
    def peft_config(self, value: dict[str, Any]) -> None:
        self.__dict__["_para_configs"] = value

    @property
    def active_adapters(self) -> list[str]:
        active = self.__dict__.get("active_adapter")
        return [active] if active is not None else []

    @property
    def has_active_enabled_adapter(self) -> bool:
        return bool(self.active_adapters) and not self._adapters_disabled

    @property
    def modules_to_save(self) -> None:
        return None  # PARA trains its generators only; no backbone module is trained and saved

    def get_base_model(self) -> nn.Module:
        """The wrapped causal LM (TRL patches its forward; its weights are never trained)."""
        return self.base_model

    @contextmanager
    def disable_adapter(self):
        """Run the bare backbone inside this context (what TRL uses as the reference model)."""
        previous = self._adapters_disabled
        self.__dict__["_adapters_disabled"] = True
        try:
            yield
        finally:
            self.__dict__["_adapters_disabled"] = previous

    def disable_adapters(self) -> None:
        """Run the bare backbone until ``enable_adapters()`` (transformers' adapter toggles; ``disable_adapter()``
        is the context-manager form)."""
        self.__dict__["_adapters_disabled"] = True

    def enable_adapters(self) -> None:
        self.__dict__["_adapters_disabled"] = False

    def get_adapter_state_dict(self, adapter_name: str | None = None, state_dict=None) -> dict[str, Any]:
        """transformers' name for ``adapter_state_dict`` (the tensors ``save_pretrained`` writes)."""
        if state_dict is not None:
            _refuse("get_adapter_state_dict(state_dict=...)", "the adapter's tensors come from the model itself")
        return self.adapter_state_dict(adapter_name)  # type: ignore[attr-defined]

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        return False

    def _get_peft_specific_model_tags(self) -> list[str]:
        return ["para"]

    # ---------------------------------------------------------------- peft tuner methods PARA has not
    def get_prompt(self, *args, **kwargs):
        _refuse("get_prompt", "PARA is not a prompt-learning method")

    def get_prompt_embedding_to_save(self, *args, **kwargs):
        _refuse("get_prompt_embedding_to_save", "PARA is not a prompt-learning method")

    def get_layer_status(self):
        _refuse("get_layer_status", "it reports peft tuner layers; see ParaModel.peft_config and last_vectors()")

    def get_model_status(self):
        _refuse("get_model_status", "it reports peft tuner layers; see ParaModel.peft_config and last_vectors()")

    def prepare_model_for_gradient_checkpointing(self, model):
        _refuse("prepare_model_for_gradient_checkpointing",
                "call the backbone's gradient_checkpointing_enable() and enable_input_require_grads()")

    def create_or_update_model_card(self, output_dir: str):
        _refuse("create_or_update_model_card", "save_pretrained writes the adapter's model card")

    def merge_and_unload(self, *args, **kwargs):
        _refuse("merge_and_unload", _UNMERGEABLE)

    def merge_adapter(self, *args, **kwargs):
        _refuse("merge_adapter", _UNMERGEABLE)

    def unmerge_adapter(self, *args, **kwargs):
        _refuse("unmerge_adapter", "nothing is ever merged (" + _UNMERGEABLE + ")")


_UNMERGEABLE = ("PARA's vectors depend on each prompt, so they cannot be merged into weights; unload() gives back the "
                "unchanged backbone")
