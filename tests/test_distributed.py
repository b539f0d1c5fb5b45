"""DDP through torchrun with 2 CPU processes (gloo): one run directory, one writer, exact resume."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import FAST_TRAIN, ROOT


def torchrun(*overrides: str, cwd) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "train.py"),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # TMPDIR: see conftest.child_tmpdir
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_ddp_trains_saves_once_and_resumes_on_the_same_curve(corpus, tmp_path):
    common = [
        *FAST_TRAIN,
        f"data.source={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.max_steps=6",
        "train.log_interval=1",
        "train.val_interval=3",
        "train.sample_interval=1000",
    ]
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
