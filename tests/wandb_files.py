"""Read an offline W&B run back from its own files (the .wandb record log), as `wandb sync` would."""

import json
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768  # the record log is LevelDB's log format: 32 KiB blocks of (crc, length, type) framed chunks
HEADER = 7  # ":W&B", magic, version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:
            pos += room
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield _parse(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield _parse(pending + chunk)


def _parse(raw: bytes):
    record = wandb_internal_pb2.Record()
    record.ParseFromString(raw)
    return record


class OfflineRun:
    def __init__(self, folder: Path):
        self.folder = folder
        self.run_file = next(folder.glob("run-*.wandb"))
        self.run_id = self.run_file.stem.removeprefix("run-")
        self.history: list[dict] = []
        self.config: dict = {}
        self.artifacts: list[tuple[str, str, list[str]]] = []
        self.group = ""
        for rec in records(self.run_file):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                self.history.append(
                    {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
                )
            elif kind == "config":
                self._read_config(rec.config)
            elif kind == "run":
                self.group = rec.run.run_group or self.group
                self._read_config(rec.run.config)
            elif kind == "artifact":
                self.artifacts.append((rec.artifact.name, rec.artifact.type, list(rec.artifact.aliases)))

    def _read_config(self, config) -> None:
        for item in config.update:
            self.config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)

    def values(self, key: str) -> dict[int, object]:
        return {row["_step"]: row[key] for row in self.history if key in row}


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    return [OfflineRun(p) for p in sorted((run_dir / "wandb").glob("offline-run-*"))]
