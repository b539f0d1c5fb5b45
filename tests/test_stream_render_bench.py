"""bench/stream_render.py, the stream's renderer beside a real-time playout: what bench/gpu_check.sh runs on a GPU,
from a checkpoint or from an untrained preset, run here on the CPU for a few seconds."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("source", ["preset", "checkpoint"])
def test_the_render_bench_plays_a_models_tracks_and_records_its_figures(source, trained_run, tmp_path):
    checkpoint = trained_run / "checkpoints" / "last.pt"
    given = ["--model", "tiny"] if source == "preset" else ["--checkpoint", str(checkpoint)]
    record = tmp_path / "render.json"
    command = [sys.executable, "bench/stream_render.py", *given, "--seconds", "2", "--track-seconds", "2"]
    done = subprocess.run(
        [*command, "--batch", "2", "--json", str(record)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(record.read_text())["figures"]
    assert figures["mode / backend"].startswith("parallel / ")
    assert figures["playout (s)"] == "2"
    assert float(figures["time to the first audio (s)"]) > 0
    assert float(figures["render real-time factor"].rstrip("x")) > 0
    assert float(figures["underruns (s)"]) >= 0
    assert ("tiny (untrained)" in done.stdout) == (source == "preset")


def test_the_render_bench_needs_a_checkpoint_or_a_preset():
    done = subprocess.run(
        [sys.executable, "bench/stream_render.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "one of the arguments --checkpoint --model is required" in done.stderr
