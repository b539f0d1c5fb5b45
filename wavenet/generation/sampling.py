"""Sampling on the device: Gumbel-max with counter-based noise.

The noise for (seed, stream, sample index, class) is a hash of those four numbers, not a draw from a stateful
generator. So every backend (eager, CUDA graph, Triton kernel) can make the same noise in any order and any chunk
size, and a stream's audio depends only on its seed and its place in the batch. The Triton kernel carries its own
copy of `mix32` (wavenet/generation/triton_kernel.py); a test holds the two equal.
"""

import torch

from wavenet.audio import mu_law_encode

SILENCE_CODE = int(mu_law_encode(torch.tensor(0.0)))
MASK32 = 0xFFFFFFFF
MIX_MULTIPLIERS = (0x21F0AAAD, 0x735A2D97)  # odd constants below 2**31, so int64 products never overflow


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply rounds) on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * MIX_MULTIPLIERS[0]) & MASK32
    x = x ^ (x >> 15)
    x = (x * MIX_MULTIPLIERS[1]) & MASK32
    return x ^ (x >> 15)


def stream_keys(seed: int, batch_size: int, device: torch.device | str = "cpu", first_stream: int = 0) -> torch.Tensor:
    """The noise keys of streams first_stream .. first_stream + batch_size - 1 of `seed`: (B,) int64 in [0, 2**32)."""
    seed_key = mix32(torch.tensor(seed & MASK32, dtype=torch.int64))
    streams = torch.arange(first_stream, first_stream + batch_size, dtype=torch.int64) & MASK32
    return mix32(seed_key ^ streams).to(device)


def gumbel_noise(keys: torch.Tensor, first_index: int | torch.Tensor, steps: int, classes: int) -> torch.Tensor:
    """Gumbel noise for sample indices first_index .. first_index + steps - 1: (steps, B, classes) float32.

    first_index may be a 0-d int64 tensor on the device (the CUDA-graph backend keeps its counter there).
    """
    index = torch.arange(steps, device=keys.device, dtype=torch.int64) + first_index
    step_keys = mix32(keys[None, :] ^ (index[:, None] & MASK32))  # (steps, B)
    bits = mix32(step_keys[:, :, None] ^ torch.arange(classes, device=keys.device, dtype=torch.int64))
    uniform = ((bits >> 8).float() + 0.5) * 2.0**-24  # 24 random bits, strictly inside (0, 1)
    return -torch.log(-torch.log(uniform))


def sample_codes(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None) -> torch.Tensor:
    """argmax(logits / T + Gumbel noise): a draw from softmax(logits / T); T = 0 is greedy. (B, C) -> (B,)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    return (logits.float() / temperature + noise).argmax(dim=-1)
