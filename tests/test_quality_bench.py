"""bench/quality.py's plain baseline: heard through the project's generation engine, as the same function."""

import torch

from bench.quality import PlainWaveNet, as_wavenet
from tests.conftest import SMALL


def test_the_baselines_clip_comes_from_the_same_function():
    torch.manual_seed(0)
    plain = PlainWaveNet(SMALL).eval()
    codes = torch.randint(0, 256, (2, 3 * SMALL.receptive_field))
    with torch.no_grad():
        expected, converted = plain(codes), as_wavenet(plain, SMALL)(codes)
    assert torch.allclose(converted, expected, atol=1e-5, rtol=1e-5)
