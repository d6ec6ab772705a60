"""One configuration object for every part of the engine (scheduler, KV cache, adapters, executor, graphs)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

CPU_KV_TOKENS = 65536  # default KV-cache size on a CPU, where memory is shared with everything else


@dataclass
class EngineConfig:
    """How an engine worker is sized and which code paths it takes.

    The KV cache is paged: ``block_size`` tokens per block, blocks handed to sequences as they grow, so the
    number of sequences in flight is bounded by the tokens they hold, not by ``max_seqs × max_len``.
    """

    max_len: int = field(default=2048, metadata={"help": "tokens per sequence, prompt included"})
    max_seqs: int = field(default=256, metadata={"help": "sequences decoding at once (rows of a decoding step)"})
    block_size: int = field(default=16, metadata={"help": "tokens per KV-cache block"})
    kv_memory: float = field(default=0.5, metadata={
        "help": "on a GPU: the fraction of the device memory left free after loading the model that the KV "
                "cache takes"})
    kv_tokens: int | None = field(default=None, metadata={
        "help": f"the KV cache's size in tokens (overrides kv_memory; default on a CPU: max_seqs × max_len, "
                f"at most {CPU_KV_TOKENS})"})
    max_step_tokens: int = field(default=8192, metadata={
        "help": "tokens per engine step: one per decoding row plus the prompt tokens prefilled in the step "
                "(a prompt longer than what is left still runs when it is the step's only prefill)"})
    prefill_wait_ms: float = field(default=0.0, metadata={
        "help": "while sequences decode, a new prompt may wait up to this long so that several are prefilled in "
                "one pass (fewer, fuller passes: more throughput under load, a little more time to first token); "
                "0 prefills at once"})
    prefill_batch_tokens: int = field(default=2048, metadata={
        "help": "with prefill_wait_ms, prompts are prefilled without waiting once this many prompt tokens wait"})
    device_adapters: int = field(default=64, metadata={
        "help": "adapters of each kind (PARA, LoRA) resident on the device; more wait in CPU memory (LRU)"})
    lora_rank: int = field(default=64, metadata={"help": "the largest LoRA rank the engine serves (0: no LoRA)"})
    fused_kernels: bool | None = field(default=None, metadata={
        "help": "Triton kernels for norms, rotary, SiLU-multiply and paged attention (default: on a CUDA "
                "device with Triton)"})
    skinny_matmul_rows: int = field(default=0, metadata={
        "help": "with the Triton kernels, matmuls of at most this many rows (decoding steps, small prefill passes) "
                "run through the engine's split-K Triton matmul instead of cuBLAS; 0: cuBLAS everywhere"})
    cuda_graphs: bool | None = field(default=None, metadata={
        "help": "replay the decoding step from CUDA graphs, one per batch bucket (default: on a CUDA device)"})
    prefill_graph_tokens: int = field(default=4096, metadata={
        "help": "with cuda_graphs and the Triton kernels, packed prefill passes of up to this many tokens replay "
                "from CUDA graphs (one per token bucket; small passes are bound by kernel launches); 0: none"})
    overlap_steps: bool = field(default=False, metadata={
        "help": "launch each step before the last one's results are taken, so that the host's bookkeeping "
                "(accepting tokens, stops, scheduling) overlaps the GPU's next step; a row the last step ended "
                "decodes once more for nothing. Steps that need the last tokens first (grammars, re-prefilled "
                "sequences, a preemption) still go one at a time"})
    seed: int = field(default=0, metadata={"help": "seeds the random streams of requests that bring no seed"})

    def __post_init__(self) -> None:
        from .errors import ConfigError

        positive = {"max_len": self.max_len, "max_seqs": self.max_seqs, "block_size": self.block_size,
                    "max_step_tokens": self.max_step_tokens, "device_adapters": self.device_adapters,
                    "prefill_batch_tokens": self.prefill_batch_tokens}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.prefill_wait_ms <= 10_000:
            raise ConfigError(f"prefill_wait_ms must be in [0, 10000], got {self.prefill_wait_ms}")
        if not 0 < self.kv_memory <= 0.95:
            raise ConfigError(f"kv_memory must be in (0, 0.95], got {self.kv_memory}")
        if self.kv_tokens is not None and self.kv_tokens < self.max_len:
            raise ConfigError(f"kv_tokens ({self.kv_tokens}) must hold at least one sequence of max_len "
                              f"({self.max_len})")
        if not isinstance(self.prefill_graph_tokens, int) or self.prefill_graph_tokens < 0:
            raise ConfigError(f"prefill_graph_tokens must be a non-negative integer, got {self.prefill_graph_tokens!r}")
        if not isinstance(self.skinny_matmul_rows, int) or self.skinny_matmul_rows < 0:
            raise ConfigError(f"skinny_matmul_rows must be a non-negative integer, got {self.skinny_matmul_rows!r}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be >= 0, got {self.lora_rank}")

    @property
    def max_blocks_per_seq(self) -> int:
        return -(-self.max_len // self.block_size)

    @classmethod
    def help_texts(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
