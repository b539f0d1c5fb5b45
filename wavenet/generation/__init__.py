"""Autoregressive generation: engines (backends) behind one interface, and `generate` for whole clips.

    engine = make_engine(model, batch_size, backend="auto", temperature=1.0, seed=0)
    engine.prime(prefix_codes)
    codes = engine.generate(16000)

Backends: naive (the reference), cached (eager PyTorch, CPU or GPU), cpu (the cached step in C++), graph (CUDA
graphs), triton and triton-bf16 (one fused kernel), persistent and persistent-bf16 (weights resident on chip,
layers spread over SMs). `auto` picks the fastest exact one for the device and batch.
"""

import torch

from wavenet.generation.backends import BACKENDS, check_backend, choose_backend, make_engine
from wavenet.generation.engine import CachedEngine, Engine, NaiveEngine, Progress
from wavenet.generation.sampling import SILENCE_CODE, gumbel_noise, sample_codes
from wavenet.model import WaveNet

__all__ = [
    "BACKENDS",
    "SILENCE_CODE",
    "CachedEngine",
    "check_backend",
    "Engine",
    "NaiveEngine",
    "choose_backend",
    "generate",
    "gumbel_noise",
    "make_engine",
    "sample_codes",
]


@torch.inference_mode()
def generate(
    model: WaveNet,
    num_samples: int,
    batch_size: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    prime: torch.Tensor | None = None,
    backend: str = "auto",
    progress: Progress = None,
    first_stream: int = 0,
) -> torch.Tensor:
    """Generate (B, num_samples) mu-law codes, continuing `prime` (B, P) if given. Deterministic: row b is stream
    first_stream + b of `seed`, the same whatever the backend (in fp32) and however the streams are batched.

    progress: an optional callable, called with the number of new samples as they are done (tqdm's update).
    """
    batch = prime.shape[0] if prime is not None else batch_size
    engine = make_engine(model, batch, backend, temperature, seed, first_stream)
    if prime is not None:
        engine.prime(prime)
    return engine.generate(num_samples, progress)
