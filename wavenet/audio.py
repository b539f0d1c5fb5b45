"""Audio basics: mu-law companding and WAV I/O (soundfile), with atomic writes."""

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavenet.errors import UserError

MU_LAW_CLASSES = 256


def mu_law_encode(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Float audio in [-1, 1] to mu-law class indices 0..255 (int64): compress by log(1 + mu|x|) / log(1 + mu),
    then round onto 256 levels (the textbook formula, as torchaudio's mu_law_encoding computes it)."""
    audio = torch.as_tensor(audio, dtype=torch.float32).clamp(-1.0, 1.0)
    mu = torch.tensor(MU_LAW_CLASSES - 1.0)  # a 0-d CPU tensor acts as a scalar on any device
    compressed = torch.sign(audio) * torch.log1p(mu * audio.abs()) / torch.log1p(mu)
    return ((compressed + 1) / 2 * mu + 0.5).long()


def mu_law_decode(codes: torch.Tensor) -> torch.Tensor:
    """Mu-law class indices 0..255 back to float audio in [-1, 1]: the inverse of the compression."""
    mu = torch.tensor(MU_LAW_CLASSES - 1.0)
    compressed = codes.float() / mu * 2 - 1
    return torch.sign(compressed) * (torch.exp(compressed.abs() * torch.log1p(mu)) - 1) / mu


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float32 in [-1, 1]; returns (audio, sample_rate)."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise UserError(f"cannot read audio file {path}: {err}. Re-create it with data_prep or remove it.") from err
    return audio.mean(axis=1), rate


def write_wav(path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write mono float audio as 16-bit PCM WAV, atomically (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(torch.as_tensor(audio).detach().cpu().float().numpy()).clip(-1.0, 1.0)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular filters evenly spaced on the HTK mel scale from 0 Hz to Nyquist, (n_mels, n_fft // 2 + 1): each
    peaks at 1 on its centre and falls to 0 at its neighbours' centres."""
    hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    top_mel = 2595 * np.log10(1 + sample_rate / 2 / 700)
    edges = 700 * (10 ** (torch.linspace(0, top_mel, n_mels + 2) / 2595) - 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return torch.minimum((hz - low) / (centre - low), (high - hz) / (high - centre)).clamp_min(0)


def write_spectrogram_png(
    path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int, size: tuple[int, int] | None = None
) -> Path:
    """A log-mel spectrogram of mono audio as a PNG (low frequencies at the bottom), written atomically; `size`
    (width, height) for a thumbnail, else 256 high and at least 256 wide."""
    from PIL import Image

    audio = torch.as_tensor(audio, dtype=torch.float32).flatten()
    n_fft, hop = 1024, 128
    power = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    mel = mel_filters(sample_rate, n_fft, n_mels=128) @ power
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    level = ((db - (db.max() - 80)) / 80).clamp(0, 1).flip(0).numpy()  # 80 dB of range, in 0..1
    # a dark-purple-to-yellow colour ramp
    ramp = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float32)
    idx = level * (len(ramp) - 1)
    lo = np.floor(idx).astype(int).clip(0, len(ramp) - 2)
    frac = (idx - lo)[..., None]
    rgb = (ramp[lo] * (1 - frac) + ramp[lo + 1] * frac).astype(np.uint8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb).resize(size or (max(256, rgb.shape[1]), 256)).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
