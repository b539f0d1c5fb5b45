"""python -m wavenet.release: a trained run's checkpoint as a model to ship, as a user makes and uses one."""

import re
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from tests.conftest import FAST_TRAIN, ROOT, run_script
from tests.test_stream import start_stream, status


def release(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wavenet.release", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_release_halves_the_weights_scores_as_trained_and_plays(trained_run, corpus, tmp_path):
    licences = tmp_path / "LICENSES"
    licences.mkdir()
    (licences / "some-music.copyright").write_text("License: GPL-2+\n")
    best = trained_run / "checkpoints" / "best.pt"
    shipped, full = tmp_path / "models" / "lofi-test.pt", tmp_path / "models" / "lofi-test-fp32.pt"
    done = release(best, shipped, "--licences", licences, "--corpus", corpus)
    assert done.returncode == 0, done.stderr
    assert release(best, full, "--dtype", "fp32").returncode == 0

    payload, fp32 = (torch.load(path, weights_only=True) for path in (shipped, full))
    weight_bytes = [sum(t.nbytes for t in p["model"].values()) for p in (payload, fp32)]
    assert weight_bytes[0] * 2 == weight_bytes[1], "bf16 weights take half the bytes of fp32 ones"
    assert (shipped.parent / "lofi-test.licences" / "some-music.copyright").read_text() == "License: GPL-2+\n"
    trained, rounded = map(float, re.search(r"([\d.]+) bits/sample as trained, ([\d.]+) with", done.stdout).groups())
    assert abs(trained - payload["best_val_bits"]) < 1e-3, "scored on the windows training scored on"
    assert abs(rounded - trained) < 0.01, done.stdout
    assert {t.dtype for t in payload["model"].values() if t.is_floating_point()} == {torch.bfloat16}
    assert "optimizer" not in payload and payload["release"]["name"] == "lofi-test"

    out = tmp_path / "clips"
    run_script("generate.py", f"checkpoint={shipped}", f"out_dir={out}", "num_clips=1", "seconds=0.1", cwd=tmp_path)
    audio, rate = sf.read(out / "clip_000.wav")
    assert rate == 16000 and len(audio) == 1600 and audio.std() > 0

    workdir = tmp_path / "stream"
    proc = start_stream(shipped, workdir, "sink=file", "duration_seconds=4")
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, output
    assert status(workdir)["model"] == "lofi-test" and status(workdir)["audio_sent_s"] >= 3


def test_training_cannot_resume_from_a_release_and_says_so(trained_run, corpus, tmp_path):
    shipped = tmp_path / "lofi-test.pt"
    assert release(trained_run / "checkpoints" / "best.pt", shipped).returncode == 0
    proc = run_script(
        "train.py",
        *FAST_TRAIN,
        f"data.source={corpus}",
        "name=again",
        f"train.resume={shipped}",
        f"data.cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{shipped} is a released model" in proc.stdout + proc.stderr


def test_bad_licences_and_dtype_are_named(trained_run, tmp_path):
    best = trained_run / "checkpoints" / "best.pt"
    empty = tmp_path / "none"
    empty.mkdir()
    for args, named in [(("--licences", empty), "--licences"), (("--dtype", "fp8"), "--dtype fp8")]:
        proc = release(best, tmp_path / "out.pt", *args)
        assert proc.returncode == 2 and named in proc.stderr, proc.stderr
        assert not (tmp_path / "out.pt").exists()
