"""The JSON record every benchmark can write with --json: date, device, versions, command, then its figures."""

import json
import platform
import sys
from datetime import date
from pathlib import Path

from wavenet.files import write_text_atomic


def write_record(path: str | Path, device: str, **figures) -> None:
    """Write {date, device, versions, command, **figures} to `path` (the command as it was typed), atomically.

    A bench may call it again after every row, so that a run stopped at its time limit keeps what it measured.
    """
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        import triton

        versions |= {"cuda": torch.version.cuda, "triton": triton.__version__}
    record = {
        "date": date.today().isoformat(),
        "device": device,
        "versions": versions,
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        **figures,
    }
    write_text_atomic(Path(path), json.dumps(record, indent=2) + "\n")
