import librosa
import numpy as np
import soundfile as sf
import torch

from wavenet.audio import mel_filters, mu_law_decode, mu_law_encode, write_wav
from wavenet.generation import SILENCE_CODE


def test_mu_law_gives_the_textbook_codes_and_levels():
    audio = torch.cat(
        [torch.linspace(-1, 1, 200_001), 0.01 * torch.randn(100_000, generator=torch.Generator().manual_seed(0))]
    )
    x = audio.double().clamp(-1, 1).numpy()
    textbook = np.floor((np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255) + 1) / 2 * 255 + 0.5)
    codes = mu_law_encode(audio).numpy()
    assert np.abs(codes - textbook).max() <= 1  # float32 against float64: only exact ties may round apart
    assert (codes == textbook).mean() > 0.9999
    levels = np.arange(256) / 255 * 2 - 1
    expected = np.sign(levels) * np.expm1(np.abs(levels) * np.log1p(255)) / 255
    np.testing.assert_allclose(mu_law_decode(torch.arange(256)).numpy(), expected, atol=1e-6)


def test_mu_law_round_trip_and_range():
    audio = torch.linspace(-1, 1, 10001)
    codes = mu_law_encode(audio)
    assert codes.min() == 0 and codes.max() == 255
    assert SILENCE_CODE in (127, 128)
    # mu-law steps are finest near zero: quiet audio comes back almost exactly
    quiet = torch.linspace(-0.01, 0.01, 101)
    assert (mu_law_decode(mu_law_encode(quiet)) - quiet).abs().max() < 4e-4  # half a step near 0.01
    assert (mu_law_decode(codes) - audio).abs().max() < 0.04


def test_mel_filters_are_librosas_htk_filters():
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128, htk=True, norm=None)
    np.testing.assert_allclose(mel_filters(16000, 1024, 128).numpy(), expected, atol=1e-4)


def test_write_wav_is_16_bit_and_leaves_no_temp_file(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.sin(np.linspace(0, 100, 1600)) * 0.5, 16000)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
