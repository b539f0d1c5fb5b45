"""The built-in corpus: deterministic, the right format, and music with a lo-fi beat."""

import json

import librosa
import numpy as np
import soundfile as sf

from data_prep.demo_corpus import make_corpus


def test_corpus_format_and_manifest(corpus):
    entries = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 6
    for e in entries:
        info = sf.info(corpus / e["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 30 <= info.duration <= 60
        assert set(e) >= {"id", "source", "duration", "sample_rate", "sha256", "split"}


def test_same_seed_same_corpus(corpus, tmp_path):
    make_corpus(tmp_path, tracks=2, seed=0, log=lambda *_: None)
    for name in ("demo_000_000.wav", "demo_000_001.wav"):
        assert (tmp_path / name).read_bytes() == (corpus / name).read_bytes()


def test_tracks_have_a_70_to_90_bpm_beat_and_a_soft_top_end(corpus):
    audio, rate = sf.read(corpus / "demo_000_001.wav")
    tempo, _ = librosa.beat.beat_track(y=audio, sr=rate)
    tempo = float(np.atleast_1d(tempo)[0])
    assert 70 <= tempo <= 90 or 140 <= tempo <= 180  # beat trackers may count the eighth notes
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    assert spectrum[freqs > 6000].sum() < 0.02 * spectrum.sum(), "the mix should be low-passed"
    assert spectrum[freqs < 250].sum() > 0.1 * spectrum.sum(), "kick and bass should carry the low end"
