"""Choosing the torch device from a config string."""

import torch

from wavenet.errors import UserError


def resolve_device(name: str) -> torch.device:
    """ "auto" picks CUDA when present, else CPU; anything else must be a device torch knows and this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"device={name!r} is not a torch device; use auto, cpu or cuda[:N].") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but this machine has no CUDA GPU; use device=cpu or auto.")
    return device
