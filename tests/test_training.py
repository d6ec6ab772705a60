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


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["para", "lora"])
def test_response_only_logits_give_the_backbones_loss_and_gradients(arch, method):
    """The training loss asks only for the logits it needs; loss and gradients equal the full ``labels=`` loss."""
    from parapeft.training.batching import Encoded, collate
    from parapeft.training.loss import response_loss
    from parapeft.training.methods import attach
    from tiny_models import randomize_adapter

    torch.manual_seed(0)
    model = attach(tiny_model(arch), method, 4, "mean", 0.0)
    if method == "para":
        randomize_adapter(model, "default", 1, scale=0.2)
    rows = []  # right-padded rows whose responses start and end at different positions
    for prompt, response in ((5, 3), (9, 1), (4, 6)):
        ids = torch.randint(3, VOCAB, (prompt + response,)).tolist()
        rows.append(Encoded(input_ids=ids, labels=[-100] * prompt + ids[prompt:]))
    batch = collate(rows, 0)
    params = [p for p in model.parameters() if p.requires_grad]
    full = model(**batch).loss
    full_grads = torch.autograd.grad(full, params)
    ours = response_loss(model, batch, para=method == "para")
    our_grads = torch.autograd.grad(ours, params)
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)
    for a, b in zip(our_grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
