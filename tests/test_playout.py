"""Playout: tracks follow each other with crossfades; short ones overlap by less, so that they keep their airtime."""

import numpy as np

from wavenet.stream.backlog import Backlog
from wavenet.stream.playout import Playout

RATE = 16000


def test_short_tracks_overlap_by_an_eighth_of_their_length_and_long_ones_by_the_crossfade(tmp_path):
    backlog = Backlog(tmp_path, RATE)
    for index, seconds in enumerate([2, 2, 2, 20, 20]):
        backlog.add(index, np.full(seconds * RATE, 0.1 * (index + 1), dtype=np.float32))
    playout = Playout(backlog, crossfade_seconds=1.5)
    chunk, played, on_air = RATE // 20, 0, {}
    while len(on_air) < 5:
        playout.read(chunk)
        played += chunk
        on_air.setdefault(playout.current.track, played / RATE)
    # Each of the 2 s tracks overlaps its neighbours by 0.25 s; the two 20 s tracks overlap by the full 1.5 s.
    expected = {0: 0.0, 1: 1.75, 2: 3.5, 3: 5.25, 4: 5.25 + 20 - 1.5}
    assert all(abs(on_air[i] - expected[i]) <= 0.05 + 1e-9 for i in expected), on_air
    assert playout.fallback_seconds == 0
