"""The `cpu` backend: the cached engine's step run by a small C++ extension (cpu_step.cpp), so that the ~250
small operations of a base-model step pay no Python dispatch, and runs of steps release the GIL (the stream's
feeder thread and the site keep running while it renders).

The extension is compiled once per machine and PyTorch version with the compiler torch uses (g++, and ninja) into
`.cache/extensions/cpu_step/<torch and Python versions>/`; `make setup` builds it, otherwise the first use does
(about a minute). Each environment has its own build: one built against another PyTorch is not loaded.
"""

import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import pairwise
from pathlib import Path

import torch

from wavenet.errors import UserError
from wavenet.generation.engine import NOISE_CHUNK, CachedEngine, Progress
from wavenet.model import WaveNet

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_step.cpp")
STALE_LOCK_S = 300.0  # a build takes about a minute: a lock older than this was left by a build that was stopped
MIN_SHARD_WORK = 2**23  # multiply-adds per shard and step below which one thread does better (base: 7 streams)
BUILD_DIR = Path(
    os.environ.get("LOFI_WAVENET_BUILD_DIR", Path(__file__).resolve().parents[2] / ".cache" / "extensions")
)


@cache
def extension():
    """The compiled extension (built on first use, then loaded from BUILD_DIR)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime": not needed here
    from torch.utils.cpp_extension import load

    folder = (
        BUILD_DIR / "cpu_step" / f"torch-{torch.__version__}-python-{sys.version_info.major}.{sys.version_info.minor}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    wait_for_other_build(folder)
    try:
        return load(
            "lofi_wavenet_cpu_step", [str(SOURCE)], extra_cflags=["-O3", "-march=native"], build_directory=str(folder)
        )
    except (RuntimeError, OSError) as err:
        raise UserError(
            f"generation.backend=cpu could not build its C++ extension ({err}); it needs g++ and ninja "
            "(make system installs them), or use generation.backend=cached."
        ) from err


def wait_for_other_build(folder: Path, stale_after: float = STALE_LOCK_S) -> None:
    """Wait while another process builds into `folder` (its `lock` file). torch waits for that lock without end and
    without a word, so one left behind by a build that was stopped would hang every later start: a lock older than
    any build is removed, with a warning that names it."""
    lock, waiting = folder / "lock", False
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > stale_after:
            log.warning(f"removing {lock}: a build of the cpu backend left it {age:.0f} s ago and was stopped")
            lock.unlink(missing_ok=True)
            return
        if not waiting:
            log.info(f"waiting for another process's build of the cpu backend ({lock})")
            waiting = True
        time.sleep(0.5)  # the other process says nothing when it is done: its lock goes


class CpuEngine(CachedEngine):
    """The cached engine, with its step in C++: its logits to rounding (sums in another order), and its samples.

    With more than one thread (torch.get_num_threads()) and enough work per step, the streams are split into
    shards, one per thread, each stepped by a kernel of its own on its own rows: the shards never wait for each
    other within a run of steps, where splitting each product across threads would meet ~150 times a step.
    `shards` overrides the choice."""

    name = "cpu"

    def __init__(
        self,
        model: WaveNet,
        batch_size: int,
        temperature: float = 1.0,
        seed: int = 0,
        first_stream: int = 0,
        shards: int | None = None,
    ):
        if next(model.parameters()).device.type != "cpu":
            raise UserError("generation.backend=cpu runs on the CPU; on a GPU use graph, triton or auto.")
        super().__init__(model, batch_size, temperature, seed, first_stream)
        if shards is None:
            matrices = [*self.past_w, *self.now_w, *self.residual_w, self.skip_w, self.head_w1, self.head_w2]
            shards = shard_count(batch_size, torch.get_num_threads(), sum(w.numel() for w in matrices))
        self.shards = shard_rows(batch_size, shards)
        weights = extension().Weights(  # packed once, shared by the shards
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
        self.kernels = [
            extension().CpuStep(self.ring[:, rows], list(self.dilations), self.ring_offsets, weights)
            for rows in self.shards
        ]

    def _step(self, codes: torch.Tensor) -> torch.Tensor:
        logits = torch.cat(
            [kernel.step(codes[rows], self.t) for kernel, rows in zip(self.kernels, self.shards, strict=True)]
        )
        self._advance()
        return logits

    @torch.inference_mode()
    def generate(self, num_samples: int, progress: Progress = None) -> torch.Tensor:
        """As the cached engine's; the noise of the next chunk is made in a second thread while the extension
        (which releases the GIL) renders this one, so sampling costs the renderer almost nothing."""
        out = torch.empty(self.batch_size, num_samples, dtype=torch.long)
        chunks = [(start, min(NOISE_CHUNK, num_samples - start)) for start in range(0, num_samples, NOISE_CHUNK)]
        with (
            ThreadPoolExecutor(1, thread_name_prefix="noise") as noise_maker,
            ThreadPoolExecutor(len(self.shards), thread_name_prefix="shard") as shard_runner,
        ):
            upcoming = noise_maker.submit(self._chunk_noise, self.index, chunks[0][1]) if chunks else None
            for k, (start, steps) in enumerate(chunks):
                noise = upcoming.result()
                if k + 1 < len(chunks):
                    upcoming = noise_maker.submit(self._chunk_noise, self.index + steps, chunks[k + 1][1])
                runs = [
                    shard_runner.submit(
                        kernel.generate,
                        self.pending[rows],
                        self.t,
                        steps,
                        noise[:, rows] if noise.numel() else noise,
                        self.temperature,
                        out[rows],
                        start,
                    )
                    for kernel, rows in zip(self.kernels, self.shards, strict=True)
                ]
                for run in runs:
                    run.result()
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


def shard_count(batch_size: int, threads: int, macs_per_sample: int) -> int:
    """One shard per thread where each gets MIN_SHARD_WORK multiply-adds a step or more, else fewer (measured on 2
    cores: base at batch 16 renders 1.2-1.4x faster in 2 shards than in 1, at batch 4 slower; tiny, slower up to 16
    streams)."""
    return max(1, min(threads, batch_size * macs_per_sample // MIN_SHARD_WORK))


def shard_rows(batch_size: int, shards: int) -> list[slice]:
    """The batch's rows split into at most `shards` contiguous shards of nearly equal size."""
    shards = max(1, min(shards, batch_size))
    bounds = [batch_size * k // shards for k in range(shards + 1)]
    return [slice(a, b) for a, b in pairwise(bounds)]
