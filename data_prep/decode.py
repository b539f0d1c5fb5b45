"""Decoding anything ffmpeg decodes to mono float32, judged by what is inside a file, never by its name."""

import json
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_WARNINGS = 5  # distinct decoder warnings kept per file


class BadInput(Exception):
    """Audio we cannot use; the message is the reason in the report."""


class NotAudio(Exception):
    """A file with no audio stream in it; the message says what it is instead."""


@dataclass
class Probe:
    sample_rate: int
    channels: int
    duration: float  # as the container declares it; 0 when unknown
    format_name: str


@dataclass
class Decoded:
    audio: np.ndarray  # mono float32 at the source's rate
    warnings: list[str] = field(default_factory=list)  # what ffmpeg said while decoding completely


def probe(path: Path) -> Probe:
    """ffprobe's view of the first audio stream; NotAudio when the file holds none."""
    if path.stat().st_size == 0:
        raise NotAudio("empty file (0 bytes)")
    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,sample_rate,channels:format=format_name,duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams") or []
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if proc.returncode != 0 or not streams:
        hint = (
            "; MIDI holds notes, not sound: render it to audio first"
            if path.suffix.lower() in (".mid", ".midi")
            else ""
        )
        said = _first_line(proc.stderr.replace(f"{path}: ", ""))
        raise NotAudio(f"no media ffmpeg can read ({said or 'no streams'}){hint}")
    fmt = info.get("format", {})
    if not audio:
        kinds = ", ".join(f"{s.get('codec_type')} {s.get('codec_name')}" for s in streams)
        raise NotAudio(f"no audio stream ({fmt.get('format_name')}: {kinds})")
    stream = audio[0]
    return Probe(
        int(stream.get("sample_rate") or 0),
        int(stream.get("channels") or 0),
        float(fmt.get("duration", 0) or 0),
        fmt.get("format_name", ""),
    )


def decode_mono(path: Path, info: Probe) -> Decoded:
    """All of the first audio stream as mono float32 at its own rate (ffmpeg downmixes).

    Judged by exit status and by what comes out: warnings on stderr (a damaged frame, odd timestamps) are kept,
    not fatal; BadInput when ffmpeg fails or decodes nothing.
    """
    if info.sample_rate <= 0:
        raise BadInput("the audio stream declares no sample rate")
    if info.format_name == "wav":
        check_wav_complete(path)
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"],
        capture_output=True,
    )
    stderr = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise BadInput(f"decode error: {_first_line(stderr) or f'ffmpeg exit {proc.returncode}'}")
    audio = np.frombuffer(proc.stdout, dtype="<f4")
    if audio.size == 0:
        raise BadInput(f"no audio samples decoded ({_first_line(stderr) or 'the stream is empty'})")
    warnings = list(dict.fromkeys(_clean(line) for line in stderr.splitlines() if line.strip()))
    if len(warnings) > MAX_WARNINGS:
        warnings = [*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more"]
    decoded_s = audio.size / info.sample_rate
    if info.duration > 2 * decoded_s + 1:
        warnings.append(f"decoded {decoded_s:.1f} s of the {info.duration:.1f} s the container declares")
    return Decoded(audio, warnings)


def decode_start(path: Path, sample_rate: int, seconds: float) -> np.ndarray:
    """At most the first `seconds` of the first audio stream as mono float32 at `sample_rate` (ffmpeg resamples).

    Reading stops a second past `seconds`, so a short-looking file that holds hours costs no more than that;
    BadInput when ffmpeg fails or decodes nothing.
    """
    samples = int(seconds * sample_rate)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-t", f"{seconds + 1:.3f}", "-i", str(path), "-map", "0:a:0"]
    cmd += ["-af", f"aresample={sample_rate},atrim=end_sample={samples}", "-ac", "1", "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise BadInput(f"decode error: {_first_line(stderr) or f'ffmpeg exit {proc.returncode}'}")
    audio = np.frombuffer(proc.stdout, dtype="<f4")
    if audio.size == 0:
        raise BadInput(f"no audio samples decoded ({_first_line(stderr) or 'the stream is empty'})")
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


def _clean(line: str) -> str:
    """One line of ffmpeg's, without the decoder's memory address, so the same file always gives the same words."""
    return re.sub(r" @ 0x[0-9a-f]+\]", "]", line.strip())[:200]


def _first_line(text: str) -> str:
    return _clean(text.strip().splitlines()[0]) if text.strip() else ""
