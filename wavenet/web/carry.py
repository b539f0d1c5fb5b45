"""Carry it on: visitors' clips continued by the model, one at a time, in a bounded queue.

A job holds the decoded clip (never the uploaded file, which is deleted once decoded); its result, the clip followed
by the continuation, is a WAV under a generated name that is deleted after `keep_s`.
"""

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wavenet.audio import write_wav
from wavenet.model import WaveNet
from wavenet.synthesis import render_clips

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full: the visitor is asked to come back."""


@dataclass
class Job:
    clip: torch.Tensor  # the visitor's audio as mu-law codes (T,) at the model's rate
    seconds: float  # how much to continue
    temperature: float
    name: str  # the uploaded file's name, cleaned, for display only
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    seed: int = field(default_factory=lambda: secrets.randbelow(2**31))
    state: str = "queued"  # queued, rendering, done, failed
    progress: float = 0.0
    message: str = ""
    finished: float = 0.0


class CarryQueue:
    """One worker thread renders jobs in order; `submit` refuses beyond `size` waiting."""

    def __init__(self, model: WaveNet, backend: str, folder: Path, size: int, keep_s: float):
        self.model, self.backend, self.folder = model, backend, Path(folder)
        self.rate = model.cfg.sample_rate
        self.size, self.keep_s = size, keep_s
        self.jobs: dict[str, Job] = {}
        self.waiting: deque[Job] = deque()
        self.lock = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="carry-it-on", daemon=True)
        self.worker.start()

    @property
    def full(self) -> bool:
        return len(self.waiting) >= self.size

    def submit(self, job: Job) -> int:
        """Queue a job; how many are ahead of it; Busy when `size` jobs already wait."""
        with self.lock:
            if self.full:
                raise Busy(f"the station is busy: {len(self.waiting)} clips are waiting. Try again in a minute.")
            self.waiting.append(job)
            self.jobs[job.id] = job
            self.lock.notify()
            return self.position(job)

    def position(self, job: Job) -> int:
        """How many jobs are ahead of a queued one."""
        with self.lock:
            ahead = [j.id for j in self.waiting].index(job.id) if job.state == "queued" else 0
            return ahead + any(j.state == "rendering" for j in self.jobs.values())

    def result_path(self, job: Job) -> Path:
        return self.folder / f"{job.id}.wav"

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify()

    def _work(self) -> None:
        while True:
            with self.lock:
                self._forget_old()
                while not self.waiting and not self.closed:
                    self.lock.wait(timeout=60)
                    self._forget_old()
                if self.closed:
                    return
                job = self.waiting.popleft()
                job.state = "rendering"
            try:
                self._render(job)
                job.state = "done"
            except Exception as err:  # one visitor's failure must not end the worker
                log.exception(f"carry it on: job {job.id} failed")
                job.state, job.message = "failed", f"the model could not continue this clip ({err.__class__.__name__})"
            job.finished = time.monotonic()

    def _render(self, job: Job) -> None:
        samples = int(job.seconds * self.rate)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            job.progress = min(1.0, done / samples)

        start = time.perf_counter()
        with torch.inference_mode():
            audio = render_clips(self.model, samples, 1, job.temperature, job.seed, job.clip, self.backend, progress)
        write_wav(self.result_path(job), audio[0], self.rate)
        log.info(
            f"carry it on: continued a {len(job.clip) / self.rate:.1f} s clip by {job.seconds:g} s "
            f"in {time.perf_counter() - start:.1f} s (seed {job.seed})"
        )

    def _forget_old(self) -> None:
        """Delete results older than keep_s (called with the lock held)."""
        now = time.monotonic()
        for job in [j for j in self.jobs.values() if j.finished and now - j.finished > self.keep_s]:
            self.result_path(job).unlink(missing_ok=True)
            del self.jobs[job.id]
