"""bench/handoff.py, the hand-off latency bench: its two kernels compile for sm_90 here, without a GPU, and its
global way (persistent.cu's) runs on the CPU, every payload arriving whole, in an order ThreadSanitizer passes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.handoff import DEFINES, MAX_FLOATS, SOURCE, THREADS, Params
from tests.conftest import ROOT
from tests.cuda_on_cpu import CpuKernel, compile_on_cpu, sanitized


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


def run_global_way_on_cpu(build_dir: str, rounds: int = 30) -> None:
    """handoff_global on the CPU (tests/cuda_on_cpu.h), from no payload to the largest: no mismatch, no wait given
    up, the two blocks on two "SMs", and each block's slot holding its last round's payload."""
    library = compile_on_cpu(SOURCE, "handoff_global", "Params", DEFINES, Path(build_dir))
    kernel = CpuKernel(library, "handoff_global", THREADS, 0)
    for floats in (0, 64, MAX_FLOATS):
        slots, flags = torch.zeros(2, MAX_FLOATS), torch.zeros(2, 32, dtype=torch.int32)
        result, error = torch.zeros(4, dtype=torch.int64), torch.zeros(1, dtype=torch.int32)
        pointers = [t.data_ptr() for t in (slots, flags, result, error)]
        kernel.launch(2, Params(*pointers, rounds, floats))
        assert error.item() == 0 and result[1].item() == 0 and result[2:].tolist() == [0, 1], (floats, result)
        last_round = rounds + torch.arange(floats, dtype=torch.float32)  # round r carries r + i at position i
        assert torch.equal(slots[:, :floats], last_round.expand(2, -1)), floats


def test_the_global_way_hands_every_payload_over_on_the_cpu(tmp_path):
    run_global_way_on_cpu(str(tmp_path))


def test_the_global_way_is_ordered_as_a_gpu_needs_under_threadsanitizer(tmp_path):
    run = sanitized(
        ["-c", f"from tests.test_handoff_bench import run_global_way_on_cpu as run; run({str(tmp_path)!r})"], 300
    )
    assert run.returncode == 0, run.stderr[-4000:]
