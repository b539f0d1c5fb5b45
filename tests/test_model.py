"""The heart of the suite: the cached engine equals the full forward, and the model is causal."""

import pytest
import torch

from tests.conftest import SMALL
from wavenet.generation import CachedGenerator, generate
from wavenet.model import WaveNet, WaveNetConfig


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_receptive_field_formula():
    assert WaveNetConfig().receptive_field == 3070  # 3 x 10 layers, dilations 1..512
    assert SMALL.receptive_field == 31


def test_cached_steps_equal_full_forward(small_model):
    """Teacher-forced over a prefix longer than the receptive field, batch 3, fp32."""
    codes = torch.randint(0, 256, (3, 4 * SMALL.receptive_field))
    full = small_model(codes)  # (B, C, T)
    engine = CachedGenerator(small_model, batch_size=3)
    cached = torch.stack([engine.step(codes[:, t]) for t in range(codes.shape[1])], dim=2)
    assert relative_error(cached, full) < 1e-5


@pytest.mark.parametrize("prime_length", [1, 7, 31, 100])
def test_primed_engine_continues_full_forward(small_model, prime_length):
    """Priming from a prefix in one forward, then stepping, gives the full forward's logits."""
    codes = torch.randint(0, 256, (2, 150))
    full = small_model(codes)
    engine = CachedGenerator(small_model, batch_size=2)
    logits = [engine.prime(codes[:, :prime_length])]
    logits += [engine.step(codes[:, t]) for t in range(prime_length, codes.shape[1])]
    assert relative_error(torch.stack(logits, dim=2), full[:, :, prime_length - 1 :]) < 1e-5


def test_base_model_cached_equals_full_forward():
    torch.manual_seed(1)
    model = WaveNet(WaveNetConfig()).eval()
    codes = torch.randint(0, 256, (2, model.receptive_field + 50))
    full = model(codes)[:, :, -60:]
    engine = CachedGenerator(model, batch_size=2)
    engine.prime(codes[:, :-60])
    cached = torch.stack([engine.step(codes[:, t]) for t in range(codes.shape[1] - 60, codes.shape[1])], dim=2)
    assert relative_error(cached, full) < 1e-5


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


def test_same_seed_same_audio_other_seed_other_audio(small_model):
    a = generate(small_model, 300, batch_size=2, temperature=1.0, seed=5)
    b = generate(small_model, 300, batch_size=2, temperature=1.0, seed=5)
    c = generate(small_model, 300, batch_size=2, temperature=1.0, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "streams in one batch must differ"


def test_cached_and_naive_engines_draw_the_same_samples(small_model):
    cached = generate(small_model, 120, batch_size=2, temperature=0.9, seed=3, engine="cached")
    naive = generate(small_model, 120, batch_size=2, temperature=0.9, seed=3, engine="naive")
    assert torch.equal(cached, naive)


def test_temperature_zero_is_greedy_and_low_temperature_concentrates(small_model):
    greedy = generate(small_model, 50, temperature=0.0, seed=1)
    assert torch.equal(greedy, generate(small_model, 50, temperature=0.0, seed=2))
    hot = generate(small_model, 400, temperature=1.0, seed=1)
    cold = generate(small_model, 400, temperature=0.05, seed=1)
    assert cold.unique().numel() < hot.unique().numel()
