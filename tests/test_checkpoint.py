import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT
from wavenet.checkpoint import load_checkpoint, load_model
from wavenet.errors import UserError
from wavenet.model import WaveNet


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model_alone(trained_run):
    path = trained_run / "checkpoints" / "last.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 4
    model = load_model(path)
    assert isinstance(model, WaveNet)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in raw["model"])
    codes = torch.randint(0, 256, (1, 64))
    assert model(codes).shape == (1, 256, 64)


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a lofi-wavenet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(UserError, match="not a readable lofi-wavenet checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


KILLED_WRITER = """
import sys
from pathlib import Path

import torch

import wavenet.checkpoint as checkpoint

folder = checkpoint.CheckpointDir(Path(sys.argv[1]), keep=3)
folder.save({"model_config": {}, "model": {"w": torch.ones(3)}, "step": 1}, step=1, is_best=True)
real_save = torch.save


def save_half_then_hang(obj, f):
    f.write(b"\\x80\\x02half a checkpoint" * 4096)
    f.flush()
    print("half-written", flush=True)
    sys.stdin.read()  # stays here until SIGKILL


checkpoint.torch.save = save_half_then_hang
folder.save({"model_config": {}, "model": {"w": torch.zeros(3)}, "step": 2}, step=2, is_best=True)
"""


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "half-written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.glob(".step_00000002.pt.tmp")), "the kill must have landed mid-write"
    for name in ("last.pt", "best.pt", "step_00000001.pt"):
        ckpt = load_checkpoint(tmp_path / name)
        assert ckpt["step"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(3))
    assert not (tmp_path / "step_00000002.pt").exists()
