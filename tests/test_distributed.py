"""DDP through torchrun with 2 CPU processes (gloo): one run directory, one writer, exact resume."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, fast_training, wait_for

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # TMPDIR: see conftest.child_tmpdir


def torchrun(*overrides: str, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TORCHRUN, *overrides], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_ddp_trains_saves_once_and_resumes_on_the_same_curve(corpus, tmp_path):
    common = fast_training(
        corpus, tmp_path / "cache", max_steps=6, log_interval=1, val_interval=3, sample_interval=1000
    )
    torchrun(*common, "name=straight", cwd=tmp_path)
    torchrun(*common, "name=split", "train.stop_at=3", cwd=tmp_path)
    resumed = torchrun(*common, "name=split", "train.resume=auto", cwd=tmp_path)

    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["split", "straight"], "all ranks share one run dir"
    straight, split = metrics(tmp_path / "runs" / "straight"), metrics(tmp_path / "runs" / "split")
    assert [r["step"] for r in straight if "train/loss" in r] == [1, 2, 3, 4, 5, 6], "one writer: no duplicate lines"
    assert without_timing(split) == without_timing(straight)
    ckpts = sorted(p.name for p in (tmp_path / "runs" / "split" / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "last.pt", "step_00000003.pt", "step_00000006.pt"]
    assert "resumed from" in resumed.stdout + resumed.stderr
    last = torch.load(tmp_path / "runs" / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert last["samples_seen"] == 6 * 2 * 2 * 128  # steps x ranks x batch x target length: both ranks count


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train/samples_per_s"} for r in rows]


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_at_one_step_saved_once(corpus, tmp_path):
    """torchrun passes a SIGTERM (SLURM's, say) on to its workers: the ranks agree on a step, rank 0 saves it."""
    common = [
        *fast_training(
            corpus, tmp_path / "cache", max_steps=5000, log_interval=5, val_interval=1000, sample_interval=10**5
        ),
        "name=stopped",
    ]
    run_dir = tmp_path / "runs" / "stopped"
    proc = subprocess.Popen(
        [*TORCHRUN, *common], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def logged_steps() -> int:
        try:
            return len([r for r in metrics(run_dir) if "train/loss" in r])
        except (OSError, ValueError):  # not there yet, or a line half written
            return 0

    wait_for(lambda: logged_steps() >= 2, 300, "two logged intervals")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    stopped_at = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert stopped_at % 5 == 0 and 10 <= stopped_at < 5000, "at a log interval, where the ranks agree"
    assert out.count(f"SIGTERM: stopped at step {stopped_at} of 5000") == 1, out

    resumed = torchrun(*common, "train.resume=auto", f"train.stop_at={stopped_at + 5}", cwd=tmp_path)
    assert f"at step {stopped_at}" in resumed.stdout + resumed.stderr
    steps = [r["step"] for r in metrics(run_dir) if "train/loss" in r]
    assert steps == list(range(5, stopped_at + 10, 5)), "one writer, and the curve goes on from the saved step"
