"""The quality gate: every rendered track is scored before it may air, and the bad ones are dropped.

Hard rules keep silence, clipping and hiss off the air whatever the model: the share of quiet 50 ms frames, the
share of samples at full scale, and the spectral flatness of the track's average spectrum (1 for white noise,
far lower for music). Then, within each batch, the tracks the model itself finds least likely (the highest
bits per sample under the model, on a few windows) are dropped too, as SaShiMi filtered its samples.
"""

from dataclasses import dataclass

import numpy as np
import torch

from wavenet.model import WaveNet

FRAME_S = 0.05  # silence is judged per 50 ms frame
WELCH = 1024  # samples per spectrum segment for the flatness


@dataclass
class GateSettings:
    enabled: bool = True
    silence_dbfs: float = -50.0  # a frame quieter than this (RMS) is silent
    max_silent_fraction: float = 0.5  # more silent frames than this: dropped
    max_clipped_fraction: float = 0.01  # more samples at full scale than this: dropped
    max_flatness: float = 0.5  # flatter average spectrum than this (white noise is ~1): dropped as hiss
    drop_worst_fraction: float = 0.1  # of each batch, by bits per sample under the model (0 keeps all that pass)
    nll_windows: int = 2  # windows per track for the likelihood
    nll_window_samples: int = 4096  # predicted samples per window (each adds the receptive field as context)


def signal_scores(audio: np.ndarray, rate: int, silence_dbfs: float) -> dict[str, float]:
    """Silent-frame share, clipped-sample share and spectral flatness of one mono track in [-1, 1]."""
    frame = max(1, int(FRAME_S * rate))
    usable = len(audio) // frame * frame
    rms = np.sqrt(np.mean(audio[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1) + 1e-20)
    segments = len(audio) // WELCH
    spectrum = np.zeros(WELCH // 2 + 1)
    if segments:
        chunks = audio[: segments * WELCH].reshape(segments, WELCH) * np.hanning(WELCH)
        spectrum = np.mean(np.abs(np.fft.rfft(chunks, axis=1)) ** 2, axis=0)[1:]  # without DC
    flatness = float(np.exp(np.mean(np.log(spectrum + 1e-20))) / (np.mean(spectrum) + 1e-20)) if segments else 0.0
    return {
        "silent_fraction": float(np.mean(20 * np.log10(rms) < silence_dbfs)) if len(rms) else 1.0,
        "clipped_fraction": float(np.mean(np.abs(audio) >= 0.999)),
        "flatness": flatness,
    }


@torch.no_grad()
def likelihood_bits(model: WaveNet, codes: torch.Tensor, windows: int, samples: int) -> list[float]:
    """Bits per sample of each track's own codes (B, T) under the model, on `windows` evenly spaced windows."""
    rf = model.receptive_field
    length = min(rf + samples, codes.shape[1])
    if length <= rf:
        return [float("nan")] * len(codes)
    starts = np.linspace(0, codes.shape[1] - length, windows).astype(int)
    was_training = model.training
    model.eval()
    bits = []
    for track in codes:
        chunk = torch.stack([track[s : s + length] for s in starts]).long()
        logits = model(chunk[:, :-1])[:, :, rf - 1 :].float()
        bits.append(float(torch.nn.functional.cross_entropy(logits, chunk[:, rf:]) / np.log(2)))
    model.train(was_training)
    return bits


def judge(audio: np.ndarray, codes: torch.Tensor, model: WaveNet, s: GateSettings) -> list[dict]:
    """For a batch of tracks, as audio (B, T) in [-1, 1] and as the model's codes (B, T): each one's scores and
    `reason` (None when it may air)."""
    if not s.enabled:
        return [{"reason": None} for _ in audio]
    rate = model.cfg.sample_rate
    scores = [signal_scores(track, rate, s.silence_dbfs) for track in audio]
    codes = codes.to(next(model.parameters()).device)
    for score, bits in zip(scores, likelihood_bits(model, codes, s.nll_windows, s.nll_window_samples), strict=True):
        score["bits_per_sample"] = bits
        score["reason"] = _rule_broken(score, s)
    passing = [i for i, score in enumerate(scores) if score["reason"] is None]
    worst = sorted(passing, key=lambda i: scores[i]["bits_per_sample"], reverse=True)
    for i in worst[: int(s.drop_worst_fraction * len(audio))]:
        scores[i]["reason"] = f"among the least likely of its batch ({scores[i]['bits_per_sample']:.2f} bits/sample)"
    return scores


def _rule_broken(score: dict, s: GateSettings) -> str | None:
    if score["silent_fraction"] > s.max_silent_fraction:
        return f"silent ({100 * score['silent_fraction']:.0f}% of it below {s.silence_dbfs:g} dBFS)"
    if score["clipped_fraction"] > s.max_clipped_fraction:
        return f"clipping ({100 * score['clipped_fraction']:.1f}% of samples at full scale)"
    if score["flatness"] > s.max_flatness:
        return f"hiss (spectral flatness {score['flatness']:.2f}, white noise is 1)"
    return None
