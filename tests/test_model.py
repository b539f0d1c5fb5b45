"""The model: the receptive field formula, and causality proven by gradients."""

import torch

from tests.conftest import SMALL
from wavenet.model import WaveNetConfig


def test_receptive_field_formula():
    assert WaveNetConfig().receptive_field == 3070  # 3 x 10 layers, dilations 1..512
    assert SMALL.receptive_field == 31


def test_gradients_prove_causality_and_receptive_field(small_model):
    """The output at t depends on exactly the inputs t - receptive_field + 1 .. t."""
    captured = {}
    small_model.embed.register_forward_hook(lambda _m, _i, out: captured.update(x=out) or out.retain_grad())
    length, t = 200, 150
    logits = small_model(torch.randint(0, 256, (1, length)))
    logits[0, :, t].sum().backward()
    depends = captured["x"].grad[0].abs().sum(dim=1) > 0  # (T,)
    positions = torch.nonzero(depends).flatten()
    assert positions.max().item() == t, "the output must not see the future"
    assert positions.min().item() == t - SMALL.receptive_field + 1
    assert len(positions) == SMALL.receptive_field
