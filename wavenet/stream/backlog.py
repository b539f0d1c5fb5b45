"""Finished tracks on disk, and where playback is: what makes a restart resume at once."""

import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from wavenet.audio import write_wav
from wavenet.files import write_text_atomic

TRACK = re.compile(r"track_(\d{6})\.wav$")
DROPPED = re.compile(r"track_(\d{6})\.dropped\.json$")


class Backlog:
    """backlog/track_NNNNNN.wav (numbered in play order), track_NNNNNN.dropped.json for a track the quality gate
    kept off the air (its scores: playout skips the number), and backlog/position.json."""

    def __init__(self, folder: Path, sample_rate: int, keep_played: int = 50):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.keep_played = keep_played  # played tracks kept for the fallback

    def path(self, index: int) -> Path:
        return self.folder / f"track_{index:06d}.wav"

    def indices(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := TRACK.match(p.name)))

    def dropped(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := DROPPED.match(p.name)))

    def next_free_index(self) -> int:
        indices, playing = self.indices() + self.dropped(), self.load_position()["track"]
        return max(max(indices) + 1, playing) if indices else playing

    def add(self, index: int, audio: np.ndarray) -> Path:
        return write_wav(self.path(index), audio, self.sample_rate)

    def drop(self, index: int, scores: dict) -> Path:
        """Record that track `index` was rendered but kept off the air, and why."""
        return write_text_atomic(self.folder / f"track_{index:06d}.dropped.json", json.dumps(scores) + "\n")

    def read(self, index: int) -> np.ndarray:
        audio, _ = sf.read(self.path(index), dtype="float32")
        return audio

    def lengths_after(self, track: int) -> list[int]:
        """The samples of each track numbered from `track` on."""
        return [sf.info(self.path(i)).frames for i in self.indices() if i >= track]

    def seconds_after(self, track: int) -> float:
        """Audio waiting to be played: tracks numbered from `track` on."""
        return sum(self.lengths_after(track)) / self.sample_rate

    def load_position(self) -> dict:
        path = self.folder / "position.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"track": 0, "offset": 0}

    def save_position(self, track: int, offset: int) -> None:
        write_text_atomic(self.folder / "position.json", json.dumps({"track": track, "offset": offset}))

    def prune(self, playing: int) -> None:
        """Delete played tracks beyond the newest `keep_played` of them."""
        played = [i for i in self.indices() if i < playing]
        for i in played[: max(0, len(played) - self.keep_played)]:
            self.path(i).unlink(missing_ok=True)
        oldest = min(self.indices()[:1] + [playing])
        for i in self.dropped():
            if i < oldest:  # the record of a dropped track goes with the tracks around it
                (self.folder / f"track_{i:06d}.dropped.json").unlink(missing_ok=True)
