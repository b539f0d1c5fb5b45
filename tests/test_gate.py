"""The stream's quality gate: silence, clipping and hiss never air; the least likely tracks of a batch are dropped."""

import numpy as np
import pytest
import torch

from data_prep.demo_corpus import make_corpus
from wavenet.audio import mu_law_encode, read_wav
from wavenet.stream.backlog import Backlog
from wavenet.stream.gate import GateSettings, judge
from wavenet.stream.playout import Playout

RATE = 16000


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("music")
    make_corpus(folder, tracks=1, seed=0, log=lambda *_: None)
    audio, _ = read_wav(next(folder.glob("*.wav")))
    return audio[: 4 * RATE]


def batch(music: np.ndarray) -> np.ndarray:
    """Music, silence, white noise (hiss), a square wave at full scale (clipping), and quiet music."""
    rng = np.random.default_rng(0)
    t = np.arange(len(music)) / RATE
    tracks = [
        music,
        np.zeros_like(music),
        0.3 * rng.standard_normal(len(music)),
        np.sign(np.sin(2 * np.pi * 110 * t)),
        np.where(t < 3, 0.0, music),  # 3 s of silence, then 1 s of music
    ]
    return np.stack(tracks).clip(-1, 1).astype(np.float32)


def judged(audio: np.ndarray, model, settings: GateSettings) -> list[dict]:
    return judge(audio, mu_law_encode(torch.from_numpy(audio)), model, settings)


def test_silence_clipping_and_hiss_are_dropped_and_music_airs(small_model, music):
    verdicts = judged(batch(music), small_model, GateSettings(drop_worst_fraction=0))
    reasons = [v["reason"] for v in verdicts]
    assert reasons[0] is None, verdicts[0]
    assert reasons[1].startswith("silent") and reasons[4].startswith("silent")
    assert reasons[2].startswith("hiss")
    assert reasons[3].startswith("clipping")
    assert verdicts[0]["flatness"] < 0.1 < 0.9 < verdicts[2]["flatness"]
    assert all(np.isfinite(v["bits_per_sample"]) for v in verdicts)


def test_the_least_likely_of_a_batch_are_dropped(small_model, music):
    shifted = np.stack([np.roll(music, 997 * i) for i in range(10)])  # ten tracks of music that all pass the rules
    verdicts = judged(shifted, small_model, GateSettings(drop_worst_fraction=0.2))
    dropped = [i for i, v in enumerate(verdicts) if v["reason"]]
    assert len(dropped) == 2
    bits = [v["bits_per_sample"] for v in verdicts]
    assert sorted(bits, reverse=True)[:2] == sorted((bits[i] for i in dropped), reverse=True)
    assert all("least likely" in verdicts[i]["reason"] for i in dropped)


def test_disabled_gate_lets_everything_air(small_model, music):
    assert all(v["reason"] is None for v in judged(batch(music), small_model, GateSettings(enabled=False)))


def test_playout_skips_dropped_tracks(tmp_path, music):
    backlog = Backlog(tmp_path, RATE)
    backlog.add(0, music[:RATE])
    backlog.drop(1, {"reason": "hiss"})
    backlog.add(2, music[RATE : 2 * RATE])
    assert backlog.next_free_index() == 3
    playout = Playout(backlog, crossfade_seconds=0.0)
    played = set()
    for _ in range(4):
        playout.read(RATE // 2)
        played.add(playout.current.track)
    assert played == {0, 2} and playout.fallback_seconds == 0
