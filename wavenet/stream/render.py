"""Rendering ahead of playback, in a background thread.

TrackRenderer (parallel tracks): generate the next B tracks in one batch with the generation engine and put them in
the backlog, until it holds enough minutes. A batch ends early, with shorter tracks, when finishing it at full
length would let the backlog run dry: so the first batch is short and the stream goes live soon, and the tracks
grow back to full length as the backlog fills. LiveRenderer (direct): one continuous stream, chunk by chunk, into a
queue that the playout drains behind a small jitter buffer.
"""

import logging
import queue
import threading
import time

import numpy as np
import torch

from wavenet.audio import mu_law_decode
from wavenet.generation import Engine, make_engine
from wavenet.model import WaveNet
from wavenet.progress import Progress
from wavenet.stream.backlog import Backlog
from wavenet.stream.gate import GateSettings, judge
from wavenet.stream.playout import crossfade_samples

log = logging.getLogger(__name__)

LIVE_STREAM = 2**32 - 1  # the live stream's noise stream number; track n is stream n of the same seed
PIECE_SECONDS = 0.25  # a batch is generated in pieces of this much audio; between pieces it may end
MARGIN = 0.8  # the share of the measured render rate counted on when deciding how long a batch may take
PRE_LIVE_SHARE = 0.8  # the speed measured before the encoder runs, counted at this share (2 cores: 0.85 beside it)
CHECK_INTERVAL_S = 0.5  # whether it ends is decided at most this often (a fast engine makes many pieces a second)
CUSHION_S = 4.0  # airtime kept in hand when a batch ends early: the encoder is fed 1 s ahead, the playout reads ahead


class Stopped(Exception):
    """Raised inside a render when the stream is stopping, so that a long batch does not hold up the exit."""


class RateMeter:
    """Audio seconds made per wall second while rendering: the real-time factor."""

    def __init__(self, sample_rate: int, limit: float | None):
        self.rate, self.limit = sample_rate, limit  # limit: samples/s at most (to share a device, or to test)
        self.audio_s = self.busy_s = 0.0
        self.window_start = time.perf_counter()
        self.window_samples = 0

    def add(self, samples: int, seconds: float) -> None:
        self.audio_s += samples / self.rate
        self.busy_s += seconds

    def throttle(self, samples: int) -> None:
        """Hold the render rate under the limit (called as samples are made)."""
        if not self.limit:
            return
        self.window_samples += samples
        ahead = self.window_samples / self.limit - (time.perf_counter() - self.window_start)
        if ahead > 0:
            time.sleep(ahead)  # pacing to a rate, by design

    @property
    def real_time_factor(self) -> float:
        return self.audio_s / self.busy_s if self.busy_s else 0.0


class TrackRenderer(threading.Thread):
    def __init__(
        self,
        model: WaveNet,
        backlog: Backlog,
        batch: int,
        track_seconds: float,
        temperature: float,
        seed: int,
        max_backlog_minutes: float,
        stop: threading.Event,
        rate_limit: float | None = None,
        backend: str = "auto",
        gate: GateSettings | None = None,
        crossfade_seconds: float = 0.0,
        min_track_seconds: float | None = None,
    ):
        super().__init__(name="track-renderer", daemon=True)
        self.model, self.backlog, self.batch, self.backend = model, backlog, batch, backend
        self.track_samples = int(track_seconds * backlog.sample_rate)
        self.min_track_samples = int(
            (track_seconds if min_track_seconds is None else min_track_seconds) * backlog.sample_rate
        )
        self.crossfade_s = crossfade_seconds
        self.finish_s = 0.0  # how long the last batch took after its generation (the gate, writing the tracks)
        self.temperature, self.seed = temperature, seed
        self.max_backlog_s = max_backlog_minutes * 60
        self.stop = stop
        self.meter = RateMeter(backlog.sample_rate, rate_limit)
        self.playing_track = backlog.load_position()["track"]
        self.error: BaseException | None = None
        self.startup: Progress | None = None  # the first batch, while the stream waits to go live
        self.gate = gate or GateSettings()
        self.rendered = self.dropped = 0  # tracks, since this start
        self.engine: Engine | None = None  # made once, restarted for each batch (a GPU backend's graphs stay)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if self.backlog.seconds_after(self.playing_track) >= self.max_backlog_s:
                    self.stop.wait(1.0)  # enough rendered: look again in a second
                    continue
                self.render_batch()
        except Stopped:
            pass
        except BaseException as err:  # surfaced by the supervisor
            self.error = err
            log.exception("track renderer failed")

    def after_step(self, samples: int) -> None:
        """Progress from the engine: `samples` more per stream (1 per step eager, 64 per graph, more per kernel)."""
        if self.stop.is_set():
            raise Stopped
        if self.startup is not None:
            self.startup.update(samples)
        self.meter.throttle(samples * self.batch)

    def render_batch(self) -> None:
        first = self.backlog.next_free_index()
        if not self.backlog.indices():  # a cold start: the batch ends as soon as its tracks are long enough
            seconds = self.min_track_samples / self.backlog.sample_rate
            self.startup = Progress(
                self.min_track_samples, f"first {self.batch} tracks, {seconds:g} s each at least", unit="samples"
            )
        start = time.perf_counter()
        self.meter.window_start, self.meter.window_samples = start, 0
        codes = self.generate_tracks(first, start)
        generated = time.perf_counter()
        if self.startup is not None:
            self.startup.close()
            self.startup = None
        audio = mu_law_decode(codes).cpu().numpy()
        dropped = []
        for i, (track, scores) in enumerate(zip(audio, judge(audio, codes, self.model, self.gate), strict=True)):
            if scores["reason"]:
                self.backlog.drop(first + i, scores)
                dropped.append(f"{first + i} {scores['reason']}")
            else:
                self.backlog.add(first + i, fade_edges(track, self.backlog.sample_rate))
        self.rendered += len(audio)
        self.dropped += len(dropped)
        length = codes.shape[1]
        # The real-time factor counts the audio that may air, and the gate's time with the rendering.
        self.meter.add(length * (len(audio) - len(dropped)), time.perf_counter() - start)
        self.finish_s = time.perf_counter() - generated
        shortened = f" ({length / self.backlog.sample_rate:g} s each: shortened, the backlog was low)"
        log.info(
            f"rendered tracks {first}-{first + self.batch - 1}{shortened if length < self.track_samples else ''}"
            f" at {self.meter.real_time_factor:.2f}x real time; the quality gate dropped {len(dropped)}"
            + (f": {'; '.join(dropped)}" if dropped else "")
        )

    @torch.inference_mode()
    def generate_tracks(self, first: int, start: float) -> torch.Tensor:
        """Codes (B, T) of tracks first .. first + B - 1: full length, or shorter when the backlog needs them sooner."""
        if self.engine is None:
            self.engine = make_engine(self.model, self.batch, self.backend, self.temperature, self.seed, first)
        else:
            self.engine.restart(first)
        engine = self.engine
        piece = max(1, int(PIECE_SECONDS * self.backlog.sample_rate))
        pieces, made, checked = [], 0, start
        while made < self.track_samples:
            n = min(piece, self.track_samples - made)
            pieces.append(engine.generate(n, progress=self.after_step))
            made += n
            now = time.perf_counter()
            if made < self.track_samples and now - checked >= CHECK_INTERVAL_S:  # the check reads the backlog
                checked = now
                if self.long_enough(made, now - start):
                    break
        return torch.cat(pieces, dim=1)

    def long_enough(self, made: int, elapsed: float) -> bool:
        """Whether to end the batch now, with tracks of `made` samples: the backlog is down to its cushion, and the
        tracks are long enough that the next batch can be longer still before they have played."""
        seconds = made / self.backlog.sample_rate  # each track's length so far
        if made < self.min_track_samples or elapsed <= 0:
            return False
        airing = self.batch * (1 - self.gate.drop_worst_fraction if self.gate.enabled else 1)  # tracks that may air
        crossfade = self.crossfade_of(made)
        speed = MARGIN * self.batch * seconds / elapsed  # track seconds rendered per second, all streams
        if self.startup is not None:
            speed *= PRE_LIVE_SHARE  # the first batch of a cold start renders before the encoder starts
        if speed <= self.batch / airing:
            return False  # not faster than real time: shorter tracks would not fill the backlog
        ahead, cushion = self.airtime_ahead(), CUSHION_S + self.finish_s
        if ahead > cushion + self.batch * PIECE_SECONDS / speed:
            return False  # the backlog lasts at least another piece
        # The next batch as long as this one takes batch * length / speed, and must end before this one's airtime
        # (each track less its crossfade) and what is ahead now have played, less the cushion.
        needed = (airing * crossfade + cushion - ahead) / (airing - self.batch / speed)
        return seconds >= needed

    def airtime_ahead(self) -> float:
        """Seconds of audio rendered and not yet playing, each track counted less its crossfade."""
        lengths = self.backlog.lengths_after(self.playing_track + 1)
        return sum(length - self.crossfade_of(length) for length in lengths) / self.backlog.sample_rate

    def crossfade_of(self, length: int) -> float:
        """Seconds of a track of `length` samples that overlap the track before it on air."""
        rate = self.backlog.sample_rate
        return crossfade_samples(length, int(self.crossfade_s * rate)) / rate


class LiveRenderer(threading.Thread):
    """One stream generated continuously, in chunks of `chunk_seconds`, into `out`."""

    def __init__(
        self,
        model: WaveNet,
        sample_rate: int,
        temperature: float,
        seed: int,
        out: "queue.Queue",
        stop: threading.Event,
        chunk_seconds: float = 0.25,
        rate_limit: float | None = None,
        backend: str = "auto",
    ):
        super().__init__(name="live-renderer", daemon=True)
        self.model, self.temperature, self.seed, self.out, self.stop = model, temperature, seed, out, stop
        self.chunk = int(chunk_seconds * sample_rate)
        self.backend = backend
        self.meter = RateMeter(sample_rate, rate_limit)
        self.error: BaseException | None = None

    @torch.inference_mode()
    def run(self) -> None:
        try:
            engine = make_engine(self.model, 1, self.backend, self.temperature, self.seed, LIVE_STREAM)
            while not self.stop.is_set():
                start = time.perf_counter()
                codes = engine.generate(self.chunk, progress=self.meter.throttle)[0]
                self.meter.add(self.chunk, time.perf_counter() - start)
                self.out.put(mu_law_decode(codes).cpu().numpy().astype(np.float32))
        except BaseException as err:
            self.error = err
            log.exception("live renderer failed")


def fade_edges(audio: np.ndarray, rate: int, seconds: float = 0.05) -> np.ndarray:
    n = min(int(seconds * rate), len(audio) // 2)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    audio = audio.astype(np.float32).copy()
    audio[:n] *= ramp
    audio[len(audio) - n :] *= ramp[::-1]
    return audio
