"""The engine interface, and its two plain-PyTorch backends: naive (the reference) and cached eager.

An engine holds the streaming state of one batch of streams. State: everything before the pending code (the
last code seen, not yet fed), at position `t`. Each step feeds the pending code and gives the logits that predict
the next one. Three calls, the same for every backend:

    engine.prime(codes)            # (B, P): start after a prefix (default: one silence code)
    engine.generate(n)             # (B, n): sample n codes, each fed back in
    engine.teacher_forced(codes)   # (B, n) -> logits (B, n, C) predicting each of the given codes; for tests

The cached engine keeps, per layer, a ring buffer of that layer's last `dilation` inputs, shape (dilation, B, R):
slot t % d holds the input at t - d until it is overwritten by the input at t. An empty buffer holds zeros,
exactly what the full forward's left padding feeds the convolution, so the two agree from the first sample.
"""

import math
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from wavenet.generation.sampling import SILENCE_CODE, gumbel_noise, sample_codes, stream_keys
from wavenet.model import WaveNet

Progress = Callable[[int], object] | None
NOISE_CHUNK = 256  # eager engines make the noise for this many steps at once


class Completion:
    """progress(n) for work queued on a device, called once the device has done it: a CUDA launch returns before
    its work runs, so counting at launch would make a stream's real-time factor and rate limit count samples that
    do not exist yet. An event marks each queued piece; the host runs at most `ahead` pieces in front of the
    device. On a CPU the work is done when the call returns, and progress is called at once."""

    def __init__(self, device: torch.device, progress: Progress, ahead: int = 2):
        self.progress, self.ahead = progress, ahead
        self.cuda = device.type == "cuda"
        self.waiting: deque[tuple[torch.cuda.Event, int]] = deque()

    def queued(self, samples: int) -> None:
        """`samples` more have been queued: report those that are done."""
        if not self.cuda:
            if self.progress is not None:
                self.progress(samples)
            return
        event = torch.cuda.Event()
        event.record()
        self.waiting.append((event, samples))
        while self.waiting and (len(self.waiting) > self.ahead or self.waiting[0][0].query()):
            self._report()

    def finish(self) -> None:
        """Wait for everything queued and report it: the caller's clock then agrees with the samples made."""
        while self.waiting:
            self._report()

    def _report(self) -> None:
        event, samples = self.waiting.popleft()
        event.synchronize()
        if self.progress is not None:
            self.progress(samples)


@contextmanager
def true_fp32() -> Iterator[None]:
    """Float32 convolutions and matmuls in full float32: cuDNN's convolutions round their inputs to TF32 by default
    on a GPU (about 1e-3 relative), and a state primed or a reference computed that way would differ from the
    cached step's float32 by far more than the 1e-5 that the engines are held to."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


class Engine:
    """Streaming generation for one batch; subclasses define `_set_history` and `_step`.

    Stream b of the batch draws the sampling noise of stream `first_stream + b` of `seed`, so a batch can be one
    slice of a larger set of streams (clip or track numbers) and give the same audio as any other slicing.
    """

    name = "engine"

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        self.model, self.batch_size, self.temperature, self.seed = model, batch_size, temperature, seed
        self.device = next(model.parameters()).device
        self.classes = model.cfg.classes
        self.keys = stream_keys(seed, batch_size, self.device, first_stream)
        self.pending = torch.full((batch_size,), SILENCE_CODE, dtype=torch.long, device=self.device)
        self.t = 0  # samples held in the state: the pending code sits at position t
        self.index = 0  # samples generated since the last prime: the noise counter

    @torch.inference_mode()
    def prime(self, codes: torch.Tensor) -> None:
        """Continue after `codes` (B, P), P >= 1: all but the last go into the state in one full forward."""
        if codes.dim() != 2 or codes.shape[0] != self.batch_size or codes.shape[1] < 1:
            raise ValueError(f"prime codes must be ({self.batch_size}, P >= 1), got {tuple(codes.shape)}")
        codes = codes.to(self.device).long()
        self.pending.copy_(codes[:, -1])
        self._set_history(codes[:, :-1])
        self.t, self.index = codes.shape[1] - 1, 0

    @torch.inference_mode()
    def restart(self, first_stream: int) -> None:
        """Start again from silence as streams first_stream.. of the same seed, as a new engine would, keeping this
        one's buffers (and the graph backend's captured graphs, which read the noise keys in place)."""
        self.keys.copy_(stream_keys(self.seed, self.batch_size, self.device, first_stream))
        self.prime(torch.full((self.batch_size, 1), SILENCE_CODE, device=self.device))

    @torch.inference_mode()
    def generate(self, num_samples: int, progress: Progress = None) -> torch.Tensor:
        """Sample (B, num_samples) codes, feeding each back in; progress(n) is called as samples are done (on a GPU
        too: see Completion), and the call returns once all of them are."""
        out = torch.empty(self.batch_size, num_samples, dtype=torch.long, device=self.device)
        completion = Completion(self.device, progress, ahead=8)
        for start in range(0, num_samples, NOISE_CHUNK):
            steps = min(NOISE_CHUNK, num_samples - start)
            noise = self._noise(self.index, steps)
            for s in range(steps):
                out[:, start + s] = self._sample(None if noise is None else noise[s])
                completion.queued(1)
            self.index += steps
        completion.finish()
        return out

    def _noise(self, first_index: int | torch.Tensor, steps: int) -> torch.Tensor | None:
        """The Gumbel noise of the next `steps` samples, (steps, B, C); None when greedy."""
        return gumbel_noise(self.keys, first_index, steps, self.classes) if self.temperature > 0 else None

    def _sample(self, noise: torch.Tensor | None) -> torch.Tensor:
        """One step: feed the pending code, draw the next (B,), which becomes the pending code."""
        code = sample_codes(self._step(self.pending), self.temperature, noise)
        self.pending.copy_(code)
        return code

    @torch.inference_mode()
    def teacher_forced(self, codes: torch.Tensor) -> torch.Tensor:
        """Feed the pending code, then codes[:, :-1]: logits (B, n, C), row s predicting codes[:, s]."""
        logits = []
        for s in range(codes.shape[1]):
            logits.append(self._step(self.pending))
            self.pending.copy_(codes[:, s])
        return torch.stack(logits, dim=1)

    def _set_history(self, history: torch.Tensor) -> None:
        raise NotImplementedError

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        """Feed codes (B,) at position t; return the logits (B, C) predicting t + 1."""
        raise NotImplementedError


class NaiveEngine(Engine):
    """The reference: a full forward over the receptive field for every sample."""

    name = "naive"

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        super().__init__(model, batch_size, temperature, seed, first_stream)
        self.history = torch.empty(batch_size, 0, dtype=torch.long, device=self.device)

    def _set_history(self, history: torch.Tensor) -> None:
        self.history = history[:, -self.model.receptive_field :]

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        self.history = torch.cat([self.history, codes[:, None]], dim=1)[:, -self.model.receptive_field :]
        self.t += 1
        with true_fp32():
            return self.model(self.history)[:, :, -1]


class CachedEngine(Engine):
    """Ring buffers per layer; one step is a fixed sequence of small matmuls (eager PyTorch, CPU or GPU)."""

    name = "cached"
    ring_channels: int | None = None  # the ring's last dimension; a backend may pad it (default: R)

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        super().__init__(model, batch_size, temperature, seed, first_stream)
        cfg = model.cfg
        self.dilations = cfg.dilations
        R = cfg.residual_channels
        p = next(model.parameters())
        # All layers' rings in one tensor, (sum of dilations, B, channels); layer i owns rows offsets[i] .. + d.
        self.ring_offsets = [sum(self.dilations[:i]) for i in range(len(self.dilations))]
        channels = self.ring_channels or R
        self.ring = torch.zeros(sum(self.dilations), batch_size, channels, device=self.device, dtype=p.dtype)
        self.rings = [self.ring[o : o + d, :, :R] for o, d in zip(self.ring_offsets, self.dilations, strict=True)]
        layers = model.layers
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
        self.gated = torch.zeros(len(layers), batch_size, cfg.gate_channels, device=self.device, dtype=p.dtype)

    def _set_history(self, history: torch.Tensor) -> None:
        self.ring.zero_()
        length = history.shape[1]
        if length == 0:
            return
        window = history[:, -self.model.receptive_field :]  # older samples cannot reach the next output
        offset = length - window.shape[1]
        with true_fp32():
            _, layer_inputs = self.model.forward_with_layer_inputs(window)
        for ring, d, inputs in zip(self.rings, self.dilations, layer_inputs, strict=True):
            times = torch.arange(max(0, length - d), length, device=self.device)
            ring[times % d] = inputs[:, :, times - offset].permute(2, 0, 1).to(ring.dtype)

    def _past(self, i: int) -> torch.Tensor:
        """Layer i's input at t - d, (B, R); a view of its ring slot, overwritten by `_store`."""
        return self.rings[i][self.t % self.dilations[i]]

    def _store(self, i: int, past: torch.Tensor, x: torch.Tensor) -> None:
        past.copy_(x)

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        x = F.embedding(codes, self.embed_w)  # (B, R)
        last = len(self.dilations) - 1
        for i in range(len(self.dilations)):
            past = self._past(i)
            h = torch.addmm(self.dilated_b[i], past, self.past_w[i]).addmm_(x, self.now_w[i])  # (B, 2G)
            self._store(i, past, x)
            filt, gate = h.chunk(2, dim=1)
            z = torch.mul(filt.tanh_(), gate.sigmoid_(), out=self.gated[i])  # (B, G)
            if i < last:  # the last layer's residual output feeds nothing
                x = torch.addmm(self.residual_b[i], z, self.residual_w[i]).add_(x)
        skip = torch.bmm(self.gated, self.skip_w).sum(0).add_(self.skip_b)  # (B, S)
        h = torch.addmm(self.head_b1, skip.relu_(), self.head_w1).relu_()
        self._advance()
        return torch.addmm(self.head_b2, h, self.head_w2)

    def _advance(self) -> None:
        self.t += 1


def pad(w: torch.Tensor, shape: tuple[int, ...], fill: float = 0.0) -> torch.Tensor:
    """`w` in the top corner of a tensor of `shape` filled with `fill`: a fused kernel's padded weights."""
    out = torch.full(shape, fill, dtype=w.dtype, device=w.device)
    out[tuple(slice(0, n) for n in w.shape)] = w
    return out


def pad_halves(w: torch.Tensor, rows: int, G: int) -> torch.Tensor:
    """(..., rows0, 2 G0) filter | gate columns -> (..., rows, 2G), the gate half starting at column G."""
    G0, shape = w.shape[-1] // 2, (*w.shape[:-2], rows, G)
    return torch.cat([pad(w[..., :G0], shape), pad(w[..., G0:], shape)], dim=-1)


class KernelEngine(CachedEngine):
    """The cached engine's state and priming (rings `ring_channels` wide, padded for the kernel), with the steps
    run by a fused kernel in launches of at most SAMPLES_PER_LAUNCH samples; subclasses define `_launch` and
    `kernel_classes` (their padded class count)."""

    SAMPLES_PER_LAUNCH = 4096  # progress is reported once per launch, when it has run
    kernel_classes: int

    def __init__(
        self, model: WaveNet, batch_size: int, temperature: float, seed: int, first_stream: int, ring_channels: int
    ):
        self.ring_channels = ring_channels
        super().__init__(model, batch_size, temperature, seed, first_stream)
        self.period = math.lcm(*self.dilations)  # ring slots repeat with this period
        self.ring_rows = torch.tensor(self.ring_offsets, dtype=torch.int32, device=self.device)
        self.dilations_device = torch.tensor(self.dilations, dtype=torch.int32, device=self.device)

    def _launch(self, n: int, out: torch.Tensor, forced: torch.Tensor | None, logits: torch.Tensor | None) -> None:
        """Run n steps: sample into out (B, n), or with `forced` (B, n) feed those codes and write logits."""
        raise NotImplementedError

    @torch.inference_mode()
    def generate(self, num_samples: int, progress: Progress = None) -> torch.Tensor:
        out = torch.empty(self.batch_size, num_samples, dtype=torch.long, device=self.device)
        completion = Completion(self.device, progress, ahead=1)
        for start in range(0, num_samples, self.SAMPLES_PER_LAUNCH):
            n = min(self.SAMPLES_PER_LAUNCH, num_samples - start)
            chunk = torch.empty(self.batch_size, n, dtype=torch.long, device=self.device)
            self._launch(n, chunk, None, None)
            out[:, start : start + n] = chunk
            self.index += n
            completion.queued(n)
        completion.finish()
        return out

    @torch.inference_mode()
    def teacher_forced(self, codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[1]
        forced = codes.to(self.device).long().contiguous()
        logits = torch.empty(self.batch_size, n, self.kernel_classes, device=self.device)
        self._launch(n, forced, forced, logits)
        return logits[:, :, : self.classes]
