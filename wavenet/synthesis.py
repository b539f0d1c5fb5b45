"""Checkpoint -> WAV clips: the work behind generate.py."""

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data_prep.decode import BadInput, NotAudio, decode_start, probe
from wavenet.audio import mu_law_decode, mu_law_encode, write_wav
from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.device import resolve_device
from wavenet.errors import UserError
from wavenet.generation import check_backend, generate
from wavenet.model import WaveNet
from wavenet.progress import Progress
from wavenet.storage import S3Settings, local_copy

log = logging.getLogger(__name__)


def load_prime(path: str | Path, sample_rate: int, seconds: float, label: str | None = None) -> torch.Tensor:
    """At most the first `seconds` of any file ffmpeg decodes (audio, or a video's sound) as mu-law codes (T,) at
    the model's rate; a UserError starting with `label` (default "prime=PATH") when it holds no usable audio."""
    path = Path(path)
    label = label or f"prime={path}"
    if not path.is_file():
        raise UserError(f"{label} does not exist; give an audio file whose start the clips continue.")
    try:
        probe(path)
        audio = decode_start(path, sample_rate, seconds)
    except (NotAudio, BadInput) as err:
        raise UserError(f"{label}: {err}; give an audio file (anything ffmpeg decodes).") from err
    return mu_law_encode(audio[: max(1, int(seconds * sample_rate))])


def render_clips(
    model: WaveNet,
    num_samples: int,
    batch: int,
    temperature: float,
    seed: int,
    prime: torch.Tensor | None = None,
    backend: str = "auto",
    progress=None,
    first_stream: int = 0,
) -> np.ndarray:
    """(batch, T) float audio: `num_samples` generated after the prime codes (T,) if given, which the clips start
    with. Clip b is stream first_stream + b of `seed`."""
    primes = prime.expand(batch, -1) if prime is not None else None
    codes = generate(
        model,
        num_samples,
        batch,
        temperature,
        seed=seed,
        prime=primes,
        backend=backend,
        progress=progress,
        first_stream=first_stream,
    )
    if primes is not None:
        codes = torch.cat([primes.to(codes.device), codes], dim=1)
    return mu_law_decode(codes).cpu().numpy()


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
        with Progress(num_samples, f"clips {first + 1}-{first + batch}", unit="samples") as bar:
            audio = render_clips(
                model, num_samples, batch, cfg.temperature, cfg.seed, prime, cfg.generation.backend, bar.update, first
            )
        for i in range(batch):
            paths.append(write_wav(out_dir / f"clip_{first + i:03d}.wav", audio[i], rate))
    return paths
