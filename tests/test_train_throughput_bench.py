"""bench/train_throughput.py, run here on the CPU at a tiny size: every kind of step it compares on the GPU (the
project's, the same model in a plain loop, the textbook WaveNet in a plain loop) trains, and the ratios are recorded."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_the_throughput_bench_times_the_projects_step_beside_both_plain_loops(tmp_path):
    record = tmp_path / "train.json"
    sizes = ["--device", "cpu", "--model", "tiny", "--batch", "1", "--target", "256", "--steps", "2", "--warmup", "1"]
    variants = ["--variants", "fp32", "plain-bf16", "textbook-bf16", "fp32-layerwise"]
    done = subprocess.run(
        [sys.executable, "bench/train_throughput.py", *sizes, *variants, "--json", str(record)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in json.loads(record.read_text())["rows"]}
    assert list(rows) == ["fp32", "plain-bf16", "textbook-bf16", "fp32-layerwise"]
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["samples_per_s"] == pytest.approx(256 / (row["ms_per_step"] / 1000))
        assert row["vs_plain"] * rows["plain-bf16"]["samples_per_s"] == pytest.approx(row["samples_per_s"])
        assert row["vs_textbook"] * rows["textbook-bf16"]["samples_per_s"] == pytest.approx(row["samples_per_s"])
    assert "the project's best (fp32" in done.stdout and "vs textbook-bf16:" in done.stdout
