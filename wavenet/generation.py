"""Autoregressive generation: the naive reference and the cached engine (one new sample per step).

The cached engine keeps, per layer, a ring buffer of that layer's last `dilation` inputs, shape (dilation, B, R),
and a step counter on the device, so each step is the same fixed sequence of tensor work. An empty buffer holds
zeros, exactly what the full forward's left padding feeds the convolution, so the two agree from the first sample.
"""

import torch
import torch.nn.functional as F

from wavenet.audio import mu_law_encode
from wavenet.model import WaveNet

SILENCE_CODE = int(mu_law_encode(torch.tensor(0.0)))


def sample_codes(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel-max sampling on the device: argmax(logits / T + Gumbel noise); T = 0 is greedy. (B, C) -> (B,)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-12, 1.0 - 1e-7)))
    return (logits.float() / temperature + gumbel).argmax(dim=-1)


class CachedGenerator:
    """Streaming state for one batch of streams: step(codes) feeds one sample, returns the next logits."""

    def __init__(self, model: WaveNet, batch_size: int):
        cfg = model.cfg
        self.model = model
        self.batch_size = batch_size
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.residual_channels = cfg.residual_channels
        self.gate_channels = cfg.gate_channels
        self.dilations = cfg.dilations
        # Per layer: the kernel-2 dilated conv as one matmul over [input at t - d, input at t].
        self.dilated_w = [
            torch.cat([l.dilated.weight[:, :, 0], l.dilated.weight[:, :, 1]], dim=1).t().detach() for l in model.layers
        ]
        self.dilated_b = [l.dilated.bias.detach() for l in model.layers]
        self.out_w = [l.out.weight[:, :, 0].t().detach() for l in model.layers]
        self.out_b = [l.out.bias.detach() for l in model.layers]
        head = model.head
        self.head_w1, self.head_b1 = head[1].weight[:, :, 0].t().detach(), head[1].bias.detach()
        self.head_w2, self.head_b2 = head[3].weight[:, :, 0].t().detach(), head[3].bias.detach()
        self.buffers = [
            torch.zeros(d, batch_size, cfg.residual_channels, device=self.device, dtype=self.dtype)
            for d in self.dilations
        ]
        self.step_count = torch.zeros((), dtype=torch.long, device=self.device)

    def reset(self) -> None:
        for buf in self.buffers:
            buf.zero_()
        self.step_count.zero_()

    @torch.no_grad()
    def step(self, codes: torch.Tensor) -> torch.Tensor:
        """Feed the codes at time t, shape (B,); return logits (B, C) that predict time t + 1."""
        positions = {d: torch.remainder(self.step_count, d).view(1) for d in set(self.dilations)}
        x = F.embedding(codes, self.model.embed.weight)  # (B, R)
        skip_sum = None
        for i, d in enumerate(self.dilations):
            buf, pos = self.buffers[i], positions[d]
            past = buf.index_select(0, pos)[0]  # input at t - d
            buf.index_copy_(0, pos, x.unsqueeze(0))
            h = torch.addmm(self.dilated_b[i], torch.cat([past, x], dim=1), self.dilated_w[i])  # (B, 2G)
            z = torch.tanh(h[:, : self.gate_channels]) * torch.sigmoid(h[:, self.gate_channels :])
            out = torch.addmm(self.out_b[i], z, self.out_w[i])  # (B, R + S)
            x = x + out[:, : self.residual_channels]
            skip = out[:, self.residual_channels :]
            skip_sum = skip if skip_sum is None else skip_sum + skip
        h = torch.addmm(self.head_b1, skip_sum.relu(), self.head_w1).relu_()
        self.step_count += 1
        return torch.addmm(self.head_b2, h, self.head_w2)

    @torch.no_grad()
    def prime(self, codes: torch.Tensor) -> torch.Tensor:
        """Start from a prefix (B, P) in one full forward; returns the logits after its last sample, (B, C)."""
        self.reset()
        length = codes.shape[1]
        window = codes[:, -self.model.receptive_field :]  # older samples cannot reach the next output
        offset = length - window.shape[1]
        logits, layer_inputs = self.model.forward_with_layer_inputs(window)
        for buf, d, inputs in zip(self.buffers, self.dilations, layer_inputs, strict=True):
            times = torch.arange(max(0, length - d), length, device=self.device)
            buf[times % d] = inputs[:, :, times - offset].permute(2, 0, 1).to(self.dtype)
        self.step_count.fill_(length)
        return logits[:, :, -1]


@torch.no_grad()
def generate(
    model: WaveNet,
    num_samples: int,
    batch_size: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    prime: torch.Tensor | None = None,
    engine: str = "cached",
    progress=None,
) -> torch.Tensor:
    """Generate (B, num_samples) mu-law codes, continuing `prime` (B, P) if given. Deterministic given the seed.

    engine: "cached" (fast) or "naive" (the reference: a full forward over the receptive field per sample).
    progress: an optional callable, called with 1 after each new sample (tqdm's update).
    """
    device = next(model.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    if prime is None:
        prime = torch.full((batch_size, 1), SILENCE_CODE, dtype=torch.long, device=device)
    prime = prime.to(device).long()
    out = torch.empty(prime.shape[0], num_samples, dtype=torch.long, device=device)
    if engine == "cached":
        cached = CachedGenerator(model, prime.shape[0])
        logits = cached.prime(prime)
        for t in range(num_samples):
            out[:, t] = sample_codes(logits, temperature, rng)
            logits = cached.step(out[:, t])
            if progress is not None:
                progress(1)
    elif engine == "naive":
        history = prime
        for t in range(num_samples):
            logits = model(history[:, -model.receptive_field :])[:, :, -1]
            out[:, t] = sample_codes(logits, temperature, rng)
            history = torch.cat([history, out[:, t : t + 1]], dim=1)
            if progress is not None:
                progress(1)
    else:
        raise ValueError(f"unknown generation engine {engine!r}: use 'cached' or 'naive'")
    return out
