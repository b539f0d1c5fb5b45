"""train.py as a user runs it: a run directory, exact resume after SIGKILL or SIGTERM, clear errors."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import FAST_TRAIN, ROOT, fast_training, run_script, wait_for
from wavenet.data import build_shards, list_tracks, validation_windows
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.training import nll_bits, warmup_cosine


def losses(run_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_run_directory_holds_config_metrics_checkpoints_and_audio(trained_run):
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert {p.name for p in (trained_run / "checkpoints").iterdir()} >= {"last.pt", "best.pt", "step_00000004.pt"}
    assert list((trained_run / "samples").glob("*.wav"))
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/nll_bits" in r for r in rows)


@pytest.mark.slow
def test_resume_after_sigkill_continues_the_same_curve(corpus, tmp_path):
    common = fast_training(
        corpus, tmp_path / "cache", max_steps=10, log_interval=1, val_interval=5, sample_interval=1000
    )
    run_script("train.py", *common, "name=straight", cwd=tmp_path)

    cmd = [sys.executable, str(ROOT / "train.py"), *common, "name=killed"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:  # wait for the step-5 checkpoint, then kill without warning
        if "step 5:" in line and "saved" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run must have been killed mid-way"

    resumed = run_script("train.py", *common, "name=killed", "train.resume=auto", cwd=tmp_path)
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert "other settings" not in resumed.stdout + resumed.stderr
    straight, killed = losses(tmp_path / "runs" / "straight"), losses(tmp_path / "runs" / "killed")
    assert sorted(killed) == list(range(1, 11))
    assert killed == straight


def test_sigterm_stops_with_a_checkpoint_of_the_step_reached_and_resume_continues_the_same_curve(corpus, tmp_path):
    """What SLURM before a time limit, a device call's limit or `kill` do: the step in flight ends, is saved, and the
    run resumes from there, not from its last validation."""
    common = fast_training(
        corpus, tmp_path / "cache", max_steps=5000, log_interval=1, val_interval=1000, sample_interval=10**5
    )
    run_dir = tmp_path / "runs" / "stopped"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *common, "name=stopped"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for(lambda: len(finished_steps(run_dir)) >= 3, 120, "three training steps")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    stopped_at = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 3 <= stopped_at < 5000 and sorted(losses(run_dir)) == list(range(1, stopped_at + 1))
    assert f"SIGTERM: stopped at step {stopped_at} of 5000" in out and "continue with train.resume=auto" in out

    resumed = run_script(
        "train.py", *common, "name=stopped", "train.resume=auto", f"train.stop_at={stopped_at + 3}", cwd=tmp_path
    )
    assert f"at step {stopped_at}" in resumed.stdout + resumed.stderr
    run_script("train.py", *common, "name=straight", f"train.stop_at={stopped_at + 3}", cwd=tmp_path)
    assert losses(run_dir) == losses(tmp_path / "runs" / "straight")


def finished_steps(run_dir) -> list[int]:
    """The steps metrics.jsonl holds so far, while another process writes it."""
    try:
        return sorted(losses(run_dir))
    except (OSError, ValueError):  # not there yet, or a line half written
        return []


def test_existing_run_is_not_overwritten_without_resume(trained_run):
    work = trained_run.parents[1]
    proc = run_script("train.py", *FAST_TRAIN, "name=fixture", "train.max_steps=4", cwd=work, check=False)
    assert proc.returncode != 0
    assert "train.resume=auto" in proc.stderr + proc.stdout


def test_resume_with_other_settings_names_each_change(corpus, trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "runs" / "fixture")
    proc = run_script(
        "train.py",
        *[a for a in FAST_TRAIN if not a.startswith("data.batch_size=")],
        f"data.source={corpus}",
        "name=fixture",
        "data.batch_size=3",
        "optim.lr=2e-3",
        "train.max_steps=6",
        "train.val_interval=2",
        "train.log_interval=1",
        f"data.cache_dir={trained_run.parents[1] / 'cache'}",
        "train.resume=auto",
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "resumed from" in output and "other settings" in output
    warning = next(line for line in output.splitlines() if "other settings" in line)
    for change in ("data.batch_size: 2 -> 3", "optim.lr: 0.001 -> 0.002", "train.max_steps: 4 -> 6"):
        assert change in warning
    assert "train.resume" not in warning
    rows = {r["step"]: r for r in map(json.loads, (tmp_path / "runs" / "fixture" / "metrics.jsonl").open())}
    assert max(rows) == 6
    # the new peak rate and length are what the schedule follows from here (the checkpoint's optimizer said 1e-3)
    assert rows[5]["lr"] == pytest.approx(2e-3 * warmup_cosine(5, 2, 6, 1e-5 / 2e-3))


def test_typo_in_override_fails_fast(tmp_path):
    proc = run_script("train.py", "model.chanels=3", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "chanels" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_empty_and_missing_corpus_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in (("empty", "no manifest.jsonl and no .wav files"), ("missing", "is not a folder")):
        proc = run_script(
            "train.py", *FAST_TRAIN, f"data.source={tmp_path / folder}", f"name={folder}", cwd=tmp_path, check=False
        )
        assert proc.returncode == 2
        assert message in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


def test_unreadable_wav_fails_naming_the_file(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        (corpus / f"{name}.wav").write_text("not audio")
    proc = run_script(
        "train.py", *FAST_TRAIN, f"data.source={corpus}", "data.val_fraction=0.5", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "cannot read audio file" in proc.stdout + proc.stderr
    assert ".wav" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_weight_average_is_scored_shipped_and_resumed(corpus, tmp_path):
    common = [
        *FAST_TRAIN,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.max_steps=8",
        "train.val_interval=4",
        "train.sample_interval=1000",
        "optim.lr=1e-2",
        "optim.ema_decay=0.9",
    ]
    run_script("train.py", *common, "name=straight", cwd=tmp_path)
    run_script("train.py", *common, "name=halves", "train.stop_at=4", cwd=tmp_path)
    run_script("train.py", *common, "name=halves", "train.resume=auto", cwd=tmp_path)
    straight, halves = (
        torch.load(tmp_path / "runs" / name / "checkpoints" / "last.pt", weights_only=True)
        for name in ("straight", "halves")
    )
    for key in ("model", "trained_model"):  # a resumed run continues the average exactly
        assert all(torch.equal(straight[key][k], halves[key][k]) for k in straight[key]), key

    model_cfg = WaveNetConfig(**straight["model_config"])
    shards = build_shards(list_tracks(corpus), model_cfg.sample_rate, tmp_path / "cache", log=lambda *_: None)
    windows = validation_windows(shards["val"], 4, model_cfg.receptive_field + 128)

    def bits(weights: dict) -> float:
        model = WaveNet(model_cfg)
        model.load_state_dict(weights)
        with torch.no_grad():
            return nll_bits(model, windows, model_cfg.receptive_field).item()

    rows = [json.loads(line) for line in (tmp_path / "runs" / "straight" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["val/nll_bits"] for r in rows if r["step"] == 8 and "val/nll_bits" in r][0]
    assert abs(bits(straight["model"]) - logged) < 1e-5, "validation scores the average, which the checkpoint ships"
    assert abs(bits(straight["trained_model"]) - logged) > 2e-4, "the average is not the last weights"
