"""Checkpoint -> WAV clips: the work behind generate.py."""

import logging
from pathlib import Path

import librosa
import torch
from omegaconf import DictConfig, OmegaConf

from wavenet.audio import mu_law_decode, mu_law_encode, read_wav, write_wav
from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.device import resolve_device
from wavenet.errors import UserError
from wavenet.generation import check_backend, generate
from wavenet.progress import Progress
from wavenet.storage import S3Settings, local_copy

log = logging.getLogger(__name__)


def load_prime(path: str | Path, sample_rate: int, seconds: float) -> torch.Tensor:
    """The first `seconds` of a WAV as mu-law codes (T,), resampled to the model's rate."""
    if not Path(path).is_file():
        raise UserError(f"prime={path} does not exist; give a WAV file whose start the clips continue.")
    audio, rate = read_wav(path)
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    audio = audio[: max(1, int(seconds * sample_rate))]
    if len(audio) == 0:
        raise UserError(f"prime={path} holds no audio.")
    return mu_law_encode(audio)


def generate_clips(cfg: DictConfig, out_dir: Path) -> list[Path]:
    """Write cfg.num_clips clips of cfg.seconds; clip i is stream i of cfg.seed, so runs repeat whatever the
    batch size or backend."""
    if cfg.num_clips < 1 or cfg.batch_size < 1 or cfg.seconds <= 0:
        raise UserError("num_clips and batch_size must be at least 1 and seconds above 0.")
    check_backend(cfg.generation.backend)
    device = resolve_device(cfg.device)
    s3 = S3Settings(**OmegaConf.to_container(cfg.s3))
    ckpt = load_checkpoint(local_copy(cfg.checkpoint, cfg.cache_dir, s3), device)
    model = model_from_checkpoint(ckpt, device)
    rate = model.cfg.sample_rate
    prime = load_prime(local_copy(cfg.prime, cfg.cache_dir, s3), rate, cfg.prime_seconds) if cfg.prime else None
    num_samples = int(cfg.seconds * rate)
    log.info(
        f"{cfg.checkpoint}: step {ckpt['step']}, {model.num_parameters():,} parameters; {cfg.num_clips} x {cfg.seconds} s on {device}"
    )
    paths = []
    for first in range(0, cfg.num_clips, cfg.batch_size):
        batch = min(cfg.batch_size, cfg.num_clips - first)
        primes = prime.expand(batch, -1) if prime is not None else None
        with Progress(num_samples, f"clips {first + 1}-{first + batch}", unit="samples") as bar:
            codes = generate(
                model,
                num_samples,
                batch,
                cfg.temperature,
                seed=cfg.seed,
                prime=primes,
                backend=cfg.generation.backend,
                progress=bar.update,
                first_stream=first,
            )
        if primes is not None:
            codes = torch.cat([primes.to(codes.device), codes], dim=1)
        audio = mu_law_decode(codes).cpu().numpy()
        for i in range(batch):
            paths.append(write_wav(out_dir / f"clip_{first + i:03d}.wav", audio[i], rate))
    return paths
