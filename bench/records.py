"""The JSON record every benchmark can write with --json: date, device, versions, command, then its figures."""

import json
import platform
import sys
from datetime import date
from pathlib import Path


def write_record(path: str | Path, device: str, **figures) -> None:
    """Write {date, device, versions, command, **figures} to `path` (the command as it was typed)."""
    import torch

    record = {
        "date": date.today().isoformat(),
        "device": device,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        **figures,
    }
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
