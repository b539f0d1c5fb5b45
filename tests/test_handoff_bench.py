"""bench/handoff.py, the hand-off latency bench: its two kernels compile for sm_90 here, without a GPU."""

import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def test_both_handoff_kernels_compile_for_sm90_within_a_blocks_registers_and_nothing_spilled():
    done = subprocess.run(
        [sys.executable, "bench/handoff.py", "--compile-only"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert sorted(re.findall(r"entry function '(\w+)'", done.stdout)) == ["handoff_cluster", "handoff_global"]
    assert re.findall(r"(\d+) bytes spill stores", done.stdout) == ["0", "0"]
    registers = [int(r) for r in re.findall(r"Used (\d+) registers", done.stdout)]
    assert len(registers) == 2 and all(0 < r and r * 256 <= 65536 for r in registers)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU it measures")
def test_without_a_gpu_it_says_what_runs_here():
    done = subprocess.run([sys.executable, "bench/handoff.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs a CUDA GPU" in done.stderr and "--compile-only runs without one" in done.stderr
