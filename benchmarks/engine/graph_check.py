"""On a GPU, from the repository root: the engine replaying CUDA graphs (eager kernels, then compiled ones)
gives the eager engine's tokens, for a batch mixing PARA adapters and the bare model."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from tiny_models import randomize_adapter, tiny_model  # noqa: E402

from parapeft import BASE_ADAPTER, ParaConfig, get_para_model  # noqa: E402
from parapeft.engine import Engine, SamplingParams  # noqa: E402


def tiny_engine_tokens(configurations: dict[str, dict]) -> dict[str, list[list[int]]]:
    """Each configuration's tokens (Engine options) for the same five requests on a tiny Llama, on the GPU:
    40 greedy tokens each, three with a PARA adapter and two on the bare model, all in one batch."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4), adapter_name="a")
    randomize_adapter(para, "a", 1)
    para = para.cuda().eval()
    out = {}
    for name, options in configurations.items():
        engine = Engine(para, slots=4, max_len=96, **options)
        g = torch.Generator().manual_seed(0)
        requests = [engine.submit(torch.randint(3, 96, (n,), generator=g).tolist(), a,
                                  SamplingParams(max_tokens=40, ignore_eos=True))
                    for n, a in zip((5, 9, 7, 6, 8), ["a", BASE_ADAPTER, "a", "a", BASE_ADAPTER])]
        engine.run_until_done()
        out[name] = [r.tokens for r in requests]
    return out


if __name__ == "__main__":
    tokens = tiny_engine_tokens({"eager": {"cuda_graphs": False, "fused": False},
                                 "graphs": {"cuda_graphs": True, "fused": False},
                                 "fused graphs": {"cuda_graphs": True},
                                 "compiled graphs": {"cuda_graphs": True, "compile": True, "fused": False}})
    for name in ("graphs", "fused graphs", "compiled graphs"):
        print(f"{name} engine equals eager engine:", tokens[name] == tokens["eager"])
