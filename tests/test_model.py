"""The model: the receptive field formula, and causality proven by gradients."""

import torch
import torch.nn.functional as F

from tests.conftest import SMALL
from wavenet.model import WaveNet, WaveNetConfig


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


def test_the_forward_equals_the_textbook_layer_by_layer_sum(small_model):
    """The skip paths are summed in one product of all layers' gated units; the same function as each layer's 1x1
    conv giving (residual, skip) and the skips added up one layer at a time."""
    codes = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        x, skip_sum = small_model.embed(codes).transpose(1, 2), 0
        for layer in small_model.layers:
            h = layer.dilated(F.pad(x, (layer.dilation, 0)))
            filt, gate = h.chunk(2, dim=1)
            residual, skip = layer.out(torch.tanh(filt) * torch.sigmoid(gate)).split(layer.split, dim=1)
            x, skip_sum = x + residual, skip_sum + skip
        textbook = small_model.head(skip_sum)
        logits = small_model(codes)
    assert ((logits - textbook).abs().max() / textbook.abs().max()).item() < 1e-6


def test_the_logits_of_the_last_positions_alone_are_those_of_the_whole_forward(small_model):
    codes = torch.randint(0, 256, (2, 100))
    with torch.no_grad():
        assert torch.allclose(small_model(codes, last=40), small_model(codes)[:, :, -40:], rtol=0, atol=1e-6)


def test_dropout_zeroes_gated_units_in_training_and_is_gone_in_eval():
    """model.dropout: a training forward drops about that fraction of each layer's gated units (so two forwards of
    the same codes differ); in eval mode the model is the same function as one built without dropout."""
    torch.manual_seed(2)
    model = WaveNet(WaveNetConfig(**{**SMALL.to_dict(), "dropout": 0.25}))
    plain = WaveNet(SMALL)
    plain.load_state_dict(model.state_dict())
    gated = []
    model.layers[0].register_forward_hook(lambda _m, _i, out: gated.append(out[1]))
    codes = torch.randint(0, 256, (2, 400))
    with torch.no_grad():
        first, second = model.train()(codes), model(codes)
        assert not torch.equal(first, second)
        zeroed = (gated[0] == 0).float().mean().item()
        assert 0.2 < zeroed < 0.3
        assert torch.equal(model.eval()(codes), plain.eval()(codes))
