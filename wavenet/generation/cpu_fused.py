"""The `cpu` backend: the cached engine's step run by a small C++ extension (cpu_step.cpp), so that the ~250
small operations of a base-model step pay no Python dispatch, and runs of steps release the GIL (the stream's
feeder thread and the site keep running while it renders).

The extension is compiled once per machine with the compiler torch uses (g++, and ninja) into
`.cache/extensions/`; `make setup` builds it, otherwise the first use does (about a minute).
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import torch

from wavenet.errors import UserError
from wavenet.generation.engine import NOISE_CHUNK, CachedEngine, Progress
from wavenet.model import WaveNet

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_step.cpp")
BUILD_DIR = Path(
    os.environ.get("LOFI_WAVENET_BUILD_DIR", Path(__file__).resolve().parents[2] / ".cache" / "extensions")
)


@cache
def extension():
    """The compiled extension (built on first use, then loaded from BUILD_DIR)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime": not needed here
    from torch.utils.cpp_extension import load

    folder = BUILD_DIR / "cpu_step"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return load(
            "lofi_wavenet_cpu_step", [str(SOURCE)], extra_cflags=["-O3", "-march=native"], build_directory=str(folder)
        )
    except (RuntimeError, OSError) as err:
        raise UserError(
            f"generation.backend=cpu could not build its C++ extension ({err}); it needs g++ and ninja "
            "(make system installs them), or use generation.backend=cached."
        ) from err


class CpuEngine(CachedEngine):
    """The cached engine, with its step in C++: its logits to rounding (sums in another order), and its samples."""

    name = "cpu"

    def __init__(self, model: WaveNet, batch_size: int, temperature: float = 1.0, seed: int = 0, first_stream: int = 0):
        if next(model.parameters()).device.type != "cpu":
            raise UserError("generation.backend=cpu runs on the CPU; on a GPU use graph, triton or auto.")
        super().__init__(model, batch_size, temperature, seed, first_stream)
        self.kernel = extension().CpuStep(
            self.ring,
            list(self.dilations),
            self.ring_offsets,
            self.embed_w,
            self.past_w,
            self.now_w,
            self.dilated_b,
            self.residual_w,
            self.residual_b,
            self.skip_w.reshape(-1, self.skip_w.shape[2]).contiguous(),  # (L * G, S): all skips in one product
            self.skip_b,
            self.head_w1,
            self.head_b1,
            self.head_w2,
            self.head_b2,
        )

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        logits = self.kernel.step(codes, self.t).clone()  # the extension reuses its buffer
        self._advance()
        return logits

    @torch.inference_mode()
    def generate(self, num_samples: int, progress: Progress = None) -> torch.Tensor:
        """As the cached engine's; the noise of the next chunk is made in a second thread while the extension
        (which releases the GIL) renders this one, so sampling costs the renderer almost nothing."""
        out = torch.empty(self.batch_size, num_samples, dtype=torch.long)
        chunks = [(start, min(NOISE_CHUNK, num_samples - start)) for start in range(0, num_samples, NOISE_CHUNK)]
        with ThreadPoolExecutor(1, thread_name_prefix="noise") as noise_maker:
            upcoming = noise_maker.submit(self._chunk_noise, self.index, chunks[0][1]) if chunks else None
            for k, (start, steps) in enumerate(chunks):
                noise = upcoming.result()
                if k + 1 < len(chunks):
                    upcoming = noise_maker.submit(self._chunk_noise, self.index + steps, chunks[k + 1][1])
                self.kernel.generate(self.pending, self.t, steps, noise, self.temperature, out, start)
                self.t += steps
                self.index += steps
                if progress is not None:
                    progress(steps)
        return out

    def _chunk_noise(self, first_index: int, steps: int) -> torch.Tensor:
        """The noise of one chunk for the extension: empty when greedy."""
        with torch.inference_mode():
            noise = self._noise(first_index, steps)
        return torch.empty(0) if noise is None else noise
