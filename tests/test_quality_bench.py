"""bench/quality.py's plain baseline: heard through the project's generation engine, as the same function."""

import os
import signal
import subprocess
import sys

import torch

from bench.quality import PlainWaveNet, as_wavenet
from tests.conftest import ROOT, SMALL


def test_the_baselines_clip_comes_from_the_same_function():
    torch.manual_seed(0)
    plain = PlainWaveNet(SMALL).eval()
    codes = torch.randint(0, 256, (2, 3 * SMALL.receptive_field))
    with torch.no_grad():
        expected, converted = plain(codes), as_wavenet(plain, SMALL)(codes)
    assert torch.allclose(converted, expected, atol=1e-5, rtol=1e-5)


def test_a_bench_ended_by_sigterm_removes_its_work_folder(corpus, tmp_path):
    """A device call's time limit ends the bench with SIGTERM: its shards and run folders must not stay in /tmp."""
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--corpus", str(corpus), "--variants", "baseline"],
        env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = []
    for line in bench.stdout:  # the order-0 line comes once the work folder holds shards and the loop is on
        printed.append(line)
        if line.startswith("order-0 baseline"):
            break
    assert list(tmp_path.glob("lofi-quality-*")), "".join(printed)
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(timeout=60) == 128 + signal.SIGTERM, "".join(printed) + bench.stdout.read()
    assert not list(tmp_path.glob("lofi-quality-*"))
