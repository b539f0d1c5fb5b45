"""The cached engine captured in CUDA graphs: one graph replay runs many steps, sampling included.

Everything a step touches lives in static device tensors: the rings, the pending code, the output chunk, and
the two counters (position t and noise index), so the captured work reads its ring slots with device-side
indexing and no host value changes between replays.
"""

import torch

from wavenet.errors import UserError
from wavenet.generation.engine import CachedEngine, Completion, Progress
from wavenet.model import WaveNet

STEPS_PER_GRAPH = 64


class DeviceCounterEngine(CachedEngine):
    """The cached engine with its position and noise index on the device: what a CUDA graph can capture.

    Runs eagerly on any device (the tests check it on CPU); GraphEngine captures its `_steps`.
    """

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        super().__init__(model, batch_size, temperature, seed, first_stream)
        self.t_device = torch.zeros((), dtype=torch.long, device=self.device)
        self.index_device = torch.zeros((), dtype=torch.long, device=self.device)
        self.dilations_device = torch.tensor(self.dilations, dtype=torch.long, device=self.device)
        self.out = torch.zeros(batch_size, STEPS_PER_GRAPH, dtype=torch.long, device=self.device)

    def prime(self, codes: torch.Tensor) -> None:
        super().prime(codes)
        self.t_device.fill_(self.t)
        self.index_device.zero_()

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        self.slots = torch.remainder(self.t_device, self.dilations_device)  # (L,) ring slot of t - d per layer
        return super()._step(codes)

    def _past(self, i: int) -> torch.Tensor:
        return self.rings[i].index_select(0, self.slots[i : i + 1])[0]

    def _store(self, i: int, past: torch.Tensor, x: torch.Tensor) -> None:
        self.rings[i].index_copy_(0, self.slots[i : i + 1], x[None])

    def _advance(self) -> None:
        self.t += 1
        self.t_device += 1

    def _steps(self, steps: int) -> None:
        """`steps` samples into self.out[:, :steps], each fed back in: the work one graph replay does."""
        noise = self._noise(self.index_device, steps)
        for s in range(steps):
            self.out[:, s].copy_(self._sample(None if noise is None else noise[s]))
        self.index_device += steps

    def _run(self, steps: int) -> None:
        self._steps(steps)

    @torch.inference_mode()
    def generate(self, num_samples: int, progress: Progress = None) -> torch.Tensor:
        out = torch.empty(self.batch_size, num_samples, dtype=torch.long, device=self.device)
        done, t = 0, self.t
        completion = Completion(self.device, progress)
        while done < num_samples:
            steps = STEPS_PER_GRAPH if num_samples - done >= STEPS_PER_GRAPH else 1
            self._run(steps)
            out[:, done : done + steps] = self.out[:, :steps]
            done += steps
            completion.queued(steps)
        completion.finish()
        self.t = t + num_samples
        self.index += num_samples
        return out


class GraphEngine(DeviceCounterEngine):
    """DeviceCounterEngine whose steps run as CUDA-graph replays of STEPS_PER_GRAPH steps (and of 1 for the rest)."""

    name = "graph"

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        if next(model.parameters()).device.type != "cuda":
            raise UserError("generation.backend=graph needs a CUDA device; use cached (or auto) on this machine.")
        super().__init__(model, batch_size, temperature, seed, first_stream)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def _run(self, steps: int) -> None:
        self._graph(steps).replay()

    def _graph(self, steps: int) -> torch.cuda.CUDAGraph:
        """Capture `steps` steps once; the state is put back as it was, so capturing generates nothing."""
        if steps not in self.graphs:
            state = [x.clone() for x in (self.ring, self.pending, self.t_device, self.index_device)]
            t = self.t
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._steps(steps)  # warm-up outside the graph (lazy initialisation, workspaces)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._steps(steps)
            for live, saved in zip((self.ring, self.pending, self.t_device, self.index_device), state, strict=True):
                live.copy_(saved)
            self.t = t
            self.graphs[steps] = graph
        return self.graphs[steps]
