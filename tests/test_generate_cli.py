"""generate.py as a user runs it."""

import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import run_script
from wavenet.audio import mu_law_decode, mu_law_encode


def generate(run_dir, out, *overrides):
    ckpt = run_dir / "checkpoints" / "best.pt"
    return run_script("generate.py", f"checkpoint={ckpt}", f"out_dir={out}", "device=cpu", *overrides, cwd=out.parent)


def test_fixed_seed_is_deterministic_and_writes_n_clips(trained_run, tmp_path):
    generate(trained_run, tmp_path / "a", "num_clips=3", "seconds=0.1", "batch_size=2", "seed=7")
    generate(trained_run, tmp_path / "b", "num_clips=3", "seconds=0.1", "batch_size=2", "seed=7")
    generate(trained_run, tmp_path / "c", "num_clips=3", "seconds=0.1", "batch_size=2", "seed=8")
    names = sorted(p.name for p in (tmp_path / "a").glob("*.wav"))
    assert names == ["clip_000.wav", "clip_001.wav", "clip_002.wav"]
    for name in names:
        a, rate = sf.read(tmp_path / "a" / name)
        assert rate == 16000 and len(a) == 1600
        assert np.array_equal(a, sf.read(tmp_path / "b" / name)[0])
    assert not np.array_equal(sf.read(tmp_path / "a" / names[0])[0], sf.read(tmp_path / "c" / names[0])[0])


@pytest.mark.slow
def test_clips_are_the_same_whatever_the_batch_size_and_backend(trained_run, tmp_path):
    generate(trained_run, tmp_path / "a", "num_clips=3", "seconds=0.05", "batch_size=3", "seed=4")
    generate(
        trained_run, tmp_path / "b", "num_clips=3", "seconds=0.05", "batch_size=1", "seed=4", "generation.backend=naive"
    )
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):
        assert np.array_equal(sf.read(tmp_path / "a" / name)[0], sf.read(tmp_path / "b" / name)[0])


def test_unknown_backend_fails_before_any_work(trained_run, tmp_path):
    proc = run_script(
        "generate.py",
        f"checkpoint={trained_run / 'checkpoints' / 'best.pt'}",
        f"out_dir={tmp_path}",
        "generation.backend=fast",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "generation.backend='fast' is not a backend: use one of auto, naive, cached" in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*.wav"))


def test_clip_starts_with_the_prime(trained_run, corpus, tmp_path):
    prime_path = corpus / "demo_000_000.wav"
    generate(trained_run, tmp_path / "out", f"prime={prime_path}", "prime_seconds=0.25", "seconds=0.1", "num_clips=2")
    prime, _ = sf.read(prime_path, dtype="float32")
    expected = mu_law_decode(mu_law_encode(prime[:4000])).numpy()  # what the model heard
    for name in ("clip_000.wav", "clip_001.wav"):
        clip, _ = sf.read(tmp_path / "out" / name, dtype="float32")
        assert len(clip) == 4000 + 1600
        assert np.abs(clip[:4000] - expected).max() < 1 / 2**14  # equal up to 16-bit rounding
    assert torch.tensor(np.abs(clip[:4000]).max()) > 0.01, "the prime is real audio, not silence"


def test_a_prime_in_any_format_ffmpeg_decodes_and_a_prime_that_is_not_audio(trained_run, corpus, tmp_path):
    source = corpus / "demo_000_000.wav"
    video = tmp_path / "prime.mkv"  # a video's sound, at 44.1 kHz stereo in Opus: resampled and downmixed
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(source),
            "-t",
            "1",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            str(video),
        ],
        check=True,
    )
    generate(trained_run, tmp_path / "out", f"prime={video}", "prime_seconds=0.5", "seconds=0.1")
    clip, rate = sf.read(tmp_path / "out" / "clip_000.wav", dtype="float32")
    original, _ = sf.read(source, dtype="float32")
    assert rate == 16000 and len(clip) == 8000 + 1600
    assert np.corrcoef(clip[:8000], original[:8000])[0, 1] > 0.9, "the clip starts with the prime's sound"

    notes = tmp_path / "notes.txt"
    notes.write_text("la la la\n")
    proc = run_script(
        "generate.py",
        f"checkpoint={trained_run / 'checkpoints' / 'best.pt'}",
        f"prime={notes}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert f"prime={notes}: no media ffmpeg can read" in proc.stdout + proc.stderr


def test_missing_and_foreign_checkpoints_fail_clearly(tmp_path):
    (tmp_path / "foreign.pt").write_bytes(b"\x80\x04not a checkpoint")
    for path, message in (
        (tmp_path / "missing.pt", "does not exist"),
        (tmp_path / "foreign.pt", "not a readable lofi-wavenet checkpoint"),
    ):
        proc = run_script("generate.py", f"checkpoint={path}", f"out_dir={tmp_path}", cwd=tmp_path, check=False)
        assert proc.returncode == 2
        assert message in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*.wav"))
