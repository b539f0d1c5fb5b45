import json

import numpy as np
import pytest
import torch

from wavenet.audio import mu_law_decode, mu_law_encode
from wavenet.data import CodeShard, build_shards, list_tracks, train_batch
from wavenet.errors import UserError


def test_missing_and_empty_corpus_folders_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"data.source=.*nowhere is not a folder.*demo_corpus"):
        list_tracks(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"no manifest.jsonl and no .wav files"):
        list_tracks(tmp_path)


def test_manifest_tracks_and_splits(corpus):
    tracks = list_tracks(corpus)
    assert len(tracks) == 6
    assert {t.split for t in tracks} == {"train", "val"}
    assert all(t.path.is_file() for t in tracks)


def test_unreadable_wav_is_named(tmp_path):
    (tmp_path / "good.wav").write_bytes(b"")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    manifest = [
        {"id": "good", "path": "good.wav", "split": "train"},
        {"id": "broken", "path": "broken.wav", "split": "val"},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    with pytest.raises(UserError, match=r"cannot read audio file .*(good|broken)\.wav"):
        build_shards(list_tracks(tmp_path), 16000, tmp_path / "cache", log=lambda *_: None)
    assert not list((tmp_path / "cache").rglob("*.u8")), "no half-written shard may be left as if complete"


def test_shards_are_cached_and_windows_stay_inside_tracks(corpus, tmp_path):
    shards = build_shards(list_tracks(corpus), 16000, tmp_path, log=lambda *_: None)
    messages = []
    build_shards(list_tracks(corpus), 16000, tmp_path, log=messages.append)
    assert messages == [], "the second run must reuse the cache"
    # three short tracks of distinct constant codes: any window that crossed a boundary would mix codes
    shard = CodeShard(
        np.repeat(np.array([10, 20, 30], dtype=np.uint8), 100), np.array([0, 100, 200]), np.array([100, 100, 100])
    )
    windows = shard.windows(np.random.default_rng(0), 500, 60)
    assert all(len(w.unique()) == 1 for w in windows)
    assert set(windows[:, 0].tolist()) == {10, 20, 30}
    assert shards["train"].codes.dtype == np.uint8


def test_batches_are_a_function_of_step_and_rank(corpus, tmp_path):
    shard = build_shards(list_tracks(corpus), 16000, tmp_path, log=lambda *_: None)["train"]
    a = train_batch(shard, seed=0, rank=0, step=7, batch_size=4, length=300)
    assert torch.equal(a, train_batch(shard, seed=0, rank=0, step=7, batch_size=4, length=300))
    assert not torch.equal(a, train_batch(shard, seed=0, rank=1, step=7, batch_size=4, length=300))
    assert not torch.equal(a, train_batch(shard, seed=0, rank=0, step=8, batch_size=4, length=300))


def test_speed_jitter_plays_windows_a_few_percent_faster_or_slower():
    rate, tone, length = 16000, 500.0, 8000
    audio = 0.5 * np.sin(2 * np.pi * tone * np.arange(20 * rate) / rate)
    shard = CodeShard(mu_law_encode(audio).numpy().astype(np.uint8), np.array([0]), np.array([len(audio)]))

    def tones(batch: torch.Tensor) -> np.ndarray:  # zero crossings: two per period
        signs = np.signbit(mu_law_decode(batch).numpy())
        return (signs[:, 1:] != signs[:, :-1]).sum(1) / 2 / (length / rate)

    plain = train_batch(shard, seed=0, rank=0, step=3, batch_size=32, length=length)
    assert np.allclose(tones(plain), tone, atol=1.5)
    jittered = train_batch(shard, seed=0, rank=0, step=3, batch_size=32, length=length, speed_jitter=0.05)
    assert jittered.shape == plain.shape and jittered.dtype == plain.dtype
    heard = tones(jittered)
    assert heard.min() >= 0.95 * tone - 1.5 and heard.max() <= 1.05 * tone + 1.5
    assert heard.max() - heard.min() > 0.05 * tone, "the speeds must differ from window to window"
    again = train_batch(shard, seed=0, rank=0, step=3, batch_size=32, length=length, speed_jitter=0.05)
    assert torch.equal(jittered, again), "a resumed run must see the same batches"
    with pytest.raises(UserError, match=r"data.speed_jitter=0.7"):
        train_batch(shard, seed=0, rank=0, step=3, batch_size=2, length=100, speed_jitter=0.7)
