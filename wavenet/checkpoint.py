"""Self-contained checkpoints: plain data and tensors only, loadable with torch.load(weights_only=True)."""

import os
import shutil
from pathlib import Path

import torch

from wavenet.errors import UserError
from wavenet.model import WaveNet, WaveNetConfig

FORMAT = "lofi-wavenet-checkpoint"
VERSION = 1


def save_atomic(payload: dict, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load and check a lofi-wavenet checkpoint; a clear UserError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist. Give the path of a .pt written by train.py (runs/<name>/checkpoints/last.pt)."
        )
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise UserError(
            f"{path} is not a readable lofi-wavenet checkpoint ({type(err).__name__}: {str(err)[:200]})."
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a lofi-wavenet checkpoint (no '{FORMAT}' marker). Use a .pt written by train.py."
        )
    if ckpt.get("version", 0) > VERSION:
        raise UserError(f"{path} was written by a newer lofi-wavenet (format {ckpt['version']}); upgrade to load it.")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> WaveNet:
    """Rebuild the model from the checkpoint alone (its config is stored as plain data)."""
    model = WaveNet(WaveNetConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> WaveNet:
    return model_from_checkpoint(load_checkpoint(path, device), device)


class CheckpointDir:
    """runs/<name>/checkpoints: step_XXXXXXXX.pt (the newest `keep` of them), last.pt and best.pt."""

    def __init__(self, folder: Path, keep: int):
        self.folder = folder
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def save(self, payload: dict, step: int, is_best: bool) -> Path:
        path = self.folder / f"step_{step:08d}.pt"
        save_atomic(payload, path)
        if is_best:
            copy_atomic(path, self.best)
        copy_atomic(path, self.last)  # last.pt is written last: it is what resume reads
        steps = sorted(self.folder.glob("step_*.pt"))
        for old in steps[: max(0, len(steps) - self.keep)]:
            old.unlink()
        return path
