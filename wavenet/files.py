"""Atomic writes: a temporary name in the same folder, then a rename, so a reader or a crash never sees half a file."""

import json
import os
from collections.abc import Iterable
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Replace `path` with `data` in one step."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Replace `path` with `text` in one step."""
    return write_bytes_atomic(path, text.encode())


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> Path:
    """Replace `path` with one JSON object per line (manifest.jsonl and its kind), in one step."""
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
