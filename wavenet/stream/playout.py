"""Playout: an endless PCM stream from the backlog with crossfades, and a fallback that is never silent.

When the next track is not rendered yet, an earlier track plays instead (as radio automation does), and the
seconds of fallback are counted. In direct mode, live audio from a queue plays whenever its jitter buffer is full.
"""

import queue
from dataclasses import dataclass

import numpy as np

from wavenet.stream.backlog import Backlog


@dataclass
class Segment:
    start: int  # where it starts in the playout buffer
    track: int  # backlog index, or -1 for live audio
    fallback: bool
    offset: int = 0  # the sample of the track the segment starts at (a resumed track starts mid-way)


FADE_SHARE = 8  # two tracks overlap by an eighth of the shorter one at most: the first, short ones keep their airtime


def crossfade_samples(length: int, crossfade: int) -> int:
    """How long a track of `length` samples overlaps its neighbour on air: the crossfade, or less if it is short."""
    return min(crossfade, length // FADE_SHARE)


class Playout:
    def __init__(
        self,
        backlog: Backlog,
        crossfade_seconds: float,
        live: "queue.Queue[np.ndarray] | None" = None,
        jitter_seconds: float = 1.0,
    ):
        self.backlog = backlog
        self.rate = backlog.sample_rate
        self.crossfade = int(crossfade_seconds * self.rate)
        self.live = live
        self.jitter = int(jitter_seconds * self.rate)
        self.live_pending: list[np.ndarray] = []
        position = backlog.load_position()
        self.next_track = position["track"]
        self.resume_offset = position["offset"]
        self.buffer = np.zeros(0, dtype=np.float32)
        self.pos = 0
        self.segments: list[Segment] = []
        self.fallback_seconds = 0.0
        self.fallback_turn = 0

    # -- what plays next --------------------------------------------------------------------------------------
    def _next_source(self) -> tuple[np.ndarray, Segment]:
        live = self._take_live()
        if live is not None:
            return live, Segment(0, -1, False)
        available = self.backlog.indices()
        dropped = set(self.backlog.dropped())
        while self.next_track in dropped:  # kept off the air by the quality gate
            self.next_track, self.resume_offset = self.next_track + 1, 0
        if self.next_track in available:
            track, offset = self.next_track, self.resume_offset
            self.next_track, self.resume_offset = track + 1, 0
            return self.backlog.read(track)[offset:], Segment(0, track, False, offset)
        earlier = [i for i in available if i < self.next_track] or available
        if not earlier:
            raise RuntimeError("the backlog is empty: nothing to play")
        track = earlier[-1 - self.fallback_turn % len(earlier)]  # newest first, then further back
        self.fallback_turn += 1
        return self.backlog.read(track), Segment(0, track, True)

    def _take_live(self) -> np.ndarray | None:
        """Live audio once the jitter buffer holds enough of it (direct mode)."""
        if self.live is None:
            return None
        while True:
            try:
                self.live_pending.append(self.live.get_nowait())
            except queue.Empty:
                break
        if sum(len(c) for c in self.live_pending) < self.jitter:
            return None
        chunk = np.concatenate(self.live_pending)
        self.live_pending = []
        return chunk

    def _extend(self) -> None:
        audio, segment = self._next_source()
        audio = audio.astype(np.float32)
        previous = len(self.buffer) - self.segments[-1].start if self.segments else 0
        fade = min(crossfade_samples(min(len(audio), previous), self.crossfade), len(self.buffer) - self.pos)
        if segment.track == -1 or (self.segments and self.segments[-1].track == -1):
            fade = min(fade, int(0.01 * self.rate))  # live audio joins its own past: only de-click
        segment.start = len(self.buffer) - fade
        if fade > 0:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            head = audio[:fade] * ramp + self.buffer[-fade:] * ramp[::-1]
            self.buffer = np.concatenate([self.buffer[:-fade], head, audio[fade:]])
        else:
            self.buffer = np.concatenate([self.buffer, audio])
        self.segments.append(segment)

    # -- reading ----------------------------------------------------------------------------------------------
    def read(self, n: int) -> np.ndarray:
        """The next n samples, float32 in [-1, 1]; never short, never silent while the backlog holds a track."""
        while len(self.buffer) - self.pos < n + self.crossfade:
            self._extend()
        out = self.buffer[self.pos : self.pos + n]
        if self.current.fallback:
            self.fallback_seconds += n / self.rate
        self.pos += n
        if self.pos > 10 * self.rate:  # drop what has been played
            self.buffer = self.buffer[self.pos :]
            for s in self.segments:
                s.start -= self.pos
            self.segments = [
                s for i, s in enumerate(self.segments) if i == len(self.segments) - 1 or self.segments[i + 1].start > 0
            ]
            self.pos = 0
        return out

    @property
    def current(self) -> Segment:
        return next(s for s in reversed(self.segments) if s.start <= self.pos)

    def save_position(self) -> None:
        """Remember the track now playing and how far into it we are (fallback and live audio are not saved)."""
        seg = self.current
        if seg.track >= 0 and not seg.fallback:
            self.backlog.save_position(seg.track, seg.offset + self.pos - seg.start)
        self.backlog.prune(min(seg.track if seg.track >= 0 else self.next_track, self.next_track))
