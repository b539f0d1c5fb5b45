"""Autoregressive generation: the naive reference and the cached engine (one new sample per step).

The cached engine keeps, per layer, a ring buffer of that layer's last `dilation` inputs, shape (dilation, B, R),
so each step is the same fixed sequence of small tensor operations. An empty buffer holds
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
        self.dilations = cfg.dilations
        layers = model.layers
        R = cfg.residual_channels
        # The kernel-2 dilated conv is two matmuls: one on the input at t - d, one on the input at t.
        self.past_w = [layer.dilated.weight[:, :, 0].t().contiguous() for layer in layers]  # (R, 2G)
        self.now_w = [layer.dilated.weight[:, :, 1].t().contiguous() for layer in layers]  # (R, 2G)
        self.dilated_b = [layer.dilated.bias for layer in layers]
        # The 1x1 output conv splits into the residual part (per layer) and the skip part (all layers at once).
        self.residual_w = [layer.out.weight[:R, :, 0].t().contiguous() for layer in layers]  # (G, R)
        self.residual_b = [layer.out.bias[:R] for layer in layers]
        self.skip_w = torch.stack([layer.out.weight[R:, :, 0].t() for layer in layers])  # (L, G, S)
        self.skip_b = torch.stack([layer.out.bias[R:] for layer in layers]).sum(0)  # (S,)
        head = model.head
        self.head_w1, self.head_b1 = head[1].weight[:, :, 0].t().contiguous(), head[1].bias
        self.head_w2, self.head_b2 = head[3].weight[:, :, 0].t().contiguous(), head[3].bias
        self.embed_w = model.embed.weight
        # The state: each layer's last `dilation` inputs (slot t % d holds the input at t - d until overwritten).
        self.buffers = [torch.zeros(d, batch_size, R, device=self.device, dtype=self.dtype) for d in self.dilations]
        self.gated = torch.zeros(len(layers), batch_size, cfg.gate_channels, device=self.device, dtype=self.dtype)
        self.t = 0

    def reset(self) -> None:
        for buf in self.buffers:
            buf.zero_()
        self.t = 0

    @torch.inference_mode()
    def step(self, codes: torch.Tensor) -> torch.Tensor:
        """Feed the codes at time t, shape (B,); return logits (B, C) that predict time t + 1."""
        x = F.embedding(codes, self.embed_w)  # (B, R)
        last = len(self.dilations) - 1
        for i, d in enumerate(self.dilations):
            slot = self.buffers[i][self.t % d]  # (B, R): the input at t - d
            h = torch.addmm(self.dilated_b[i], slot, self.past_w[i]).addmm_(x, self.now_w[i])  # (B, 2G)
            slot.copy_(x)
            filt, gate = h.chunk(2, dim=1)
            z = torch.mul(filt.tanh_(), gate.sigmoid_(), out=self.gated[i])  # (B, G)
            if i < last:  # the last layer's residual output feeds nothing
                x = torch.addmm(self.residual_b[i], z, self.residual_w[i]).add_(x)
        skip = torch.bmm(self.gated, self.skip_w).sum(0).add_(self.skip_b)  # (B, S)
        h = torch.addmm(self.head_b1, skip.relu_(), self.head_w1).relu_()
        self.t += 1
        return torch.addmm(self.head_b2, h, self.head_w2)

    @torch.inference_mode()
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
        self.t = length
        return logits[:, :, -1]


@torch.inference_mode()
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
