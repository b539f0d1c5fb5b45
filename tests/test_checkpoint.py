import pytest
import torch

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
