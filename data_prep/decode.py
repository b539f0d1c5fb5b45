"""Decoding anything ffmpeg decodes to mono float32, with the checks that catch broken files."""

import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class BadInput(Exception):
    """A source we skip; the message is the reason in the report."""


@dataclass
class Probe:
    sample_rate: int
    channels: int
    duration: float


def probe(path: Path) -> Probe:
    """ffprobe's view of the first audio stream; BadInput when there is none."""
    if path.stat().st_size == 0:
        raise BadInput("empty file (0 bytes)")
    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams") or []
    if proc.returncode != 0 or not streams:
        raise BadInput(f"not a readable audio file ({_first_line(proc.stderr) or 'no audio stream'})")
    stream = streams[0]
    return Probe(
        int(stream["sample_rate"]), int(stream["channels"]), float(info.get("format", {}).get("duration", 0) or 0)
    )


def decode_mono(path: Path, info: Probe) -> np.ndarray:
    """All of the file as mono float32 at its own sample rate (ffmpeg downmixes); BadInput on decode errors."""
    if path.suffix.lower() == ".wav":
        check_wav_complete(path)
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"],
        capture_output=True,
    )
    errors = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 or errors:
        raise BadInput(f"decode error: {_first_line(errors) or f'ffmpeg exit {proc.returncode}'}")
    audio = np.frombuffer(proc.stdout, dtype="<f4")
    if audio.size == 0:
        raise BadInput("no audio samples")
    return audio


def check_wav_complete(path: Path) -> None:
    """A WAV whose data chunk claims more bytes than the file holds was cut short: BadInput."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return  # not a plain RIFF WAV: let ffmpeg judge it
        size = path.stat().st_size
        while chunk := f.read(8):
            if len(chunk) < 8:
                break
            kind, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"data":
                present = size - f.tell()
                if length != 0xFFFFFFFF and present < length:
                    raise BadInput(
                        f"truncated WAV: the header promises {length} bytes of audio, the file holds {present}"
                    )
                return
            f.seek(length + (length & 1), 1)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""
