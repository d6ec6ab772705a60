"""On a GPU, from the repository root: the engine replaying CUDA graphs gives the eager engine's tokens."""
import sys, torch
sys.path.insert(0, "tests")
from tiny_models import tiny_model, randomize_adapter
from parapeft import ParaConfig, get_para_model, BASE_ADAPTER
from parapeft.engine import Engine, SamplingParams
para = get_para_model(tiny_model("llama"), ParaConfig(r=4), adapter_name="a")
randomize_adapter(para, "a", 1)
para = para.cuda().eval()
out = []
for graphs in (False, True):
    e = Engine(para, slots=4, max_len=64, cuda_graphs=graphs)
    g = torch.Generator().manual_seed(0)
    rs = [e.submit(torch.randint(3, 96, (n,), generator=g).tolist(), a, SamplingParams(max_tokens=10, ignore_eos=True)) for n, a in zip((5, 9, 7, 6, 8), ["a", BASE_ADAPTER, "a", "a", BASE_ADAPTER])]
    e.run_until_done()
    out.append([r.tokens for r in rs])
print("graph engine equals eager engine:", out[0] == out[1])
