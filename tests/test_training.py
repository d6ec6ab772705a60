"""Only the generators learn; the backbone never moves."""

from __future__ import annotations

import pytest
import torch

from parapeft import ParaConfig, get_para_model
from tiny_models import ARCHS, VOCAB, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_only_generators_get_gradients_and_backbone_is_unchanged(arch):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, pooler="attention", dropout=0.1))
    para.train()
    backbone_before = {k: v.clone() for k, v in para.base_model.state_dict().items()}
    generator_before = {k: v.clone() for k, v in para.layers.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in para.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, VOCAB, (4, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    losses = []
    for _ in range(3):
        loss = para(input_ids=ids, labels=labels).loss
        loss.backward()
        for name, param in para.named_parameters():
            if name.startswith("layers."):
                assert param.requires_grad and param.grad is not None, name
            else:
                assert not param.requires_grad and param.grad is None, name
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    for key, value in para.base_model.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    changed = [k for k, v in para.layers.state_dict().items() if not torch.equal(v, generator_before[k])]
    assert any(".up." in k for k in changed) and any(".down." in k for k in changed) and any("scorer" in k for k in changed)
    assert losses[-1] < losses[0]


def test_gradients_flow_through_a_mixed_adapter_batch_to_each_adapter_only():
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4), adapter_name="a")
    para.add_adapter("b", ParaConfig(r=3))
    para.add_adapter("c", ParaConfig(r=2))
    ids = torch.randint(3, VOCAB, (3, 10))
    labels = ids.clone()
    labels[:, :5] = -100
    para.train()
    para(input_ids=ids, labels=labels, adapter_names=["a", "__base__", "b"]).loss.backward()
    grads = {name: param.grad for name, param in para.layers.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".a.up." in n or ".b.up." in n)
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if ".c." in n)
