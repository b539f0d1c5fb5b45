import numpy as np
import pytest
import soundfile as sf
import torch

from wavenet.audio import mu_law_decode, mu_law_encode, write_wav
from wavenet.generation import SILENCE_CODE


def test_mu_law_gives_torchaudios_codes_and_levels():
    torchaudio_functional = pytest.importorskip("torchaudio.functional")
    audio = torch.cat(
        [torch.linspace(-1, 1, 200_001), 0.01 * torch.randn(100_000, generator=torch.Generator().manual_seed(0))]
    )
    assert torch.equal(mu_law_encode(audio), torchaudio_functional.mu_law_encoding(audio.clamp(-1, 1), 256))
    codes = torch.arange(256)
    assert torch.equal(mu_law_decode(codes), torchaudio_functional.mu_law_decoding(codes, 256))


def test_mu_law_round_trip_and_range():
    audio = torch.linspace(-1, 1, 10001)
    codes = mu_law_encode(audio)
    assert codes.min() == 0 and codes.max() == 255
    assert SILENCE_CODE in (127, 128)
    # mu-law steps are finest near zero: quiet audio comes back almost exactly
    quiet = torch.linspace(-0.01, 0.01, 101)
    assert (mu_law_decode(mu_law_encode(quiet)) - quiet).abs().max() < 4e-4  # half a step near 0.01
    assert (mu_law_decode(codes) - audio).abs().max() < 0.04


def test_write_wav_is_16_bit_and_leaves_no_temp_file(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.sin(np.linspace(0, 100, 1600)) * 0.5, 16000)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
