"""A source folder with every kind of entry data_prep meets in the wild, and the outcome each must get.

ffmpeg writes the containers (videos with sound, audio under odd names); Python writes the broken files.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.s3_server import tone, write_wav

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def unprivileged_prefix() -> list[str] | None:
    """How to run a command so that file permissions apply: [] when we are not root, setpriv to `nobody` when we
    are and nobody can run this Python, None when permissions cannot be made to apply (root reads everything)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    ok = subprocess.run([*NOBODY, sys.executable, "-c", "import data_prep.prepare"], capture_output=True)
    return NOBODY if ok.returncode == 0 else None


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def sine(freq: int, seconds: float = 3) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}"]


def picture(seconds: float = 3) -> list[str]:
    return ["-f", "lavfi", "-i", f"color=c=navy:s=64x64:d={seconds}"]


def make_odd_corpus(src: Path, permissions_apply: bool) -> dict[str, tuple[str, str]]:
    """Fill `src`; returns {entry: (outcome, words its reason or warning must contain)} for every entry."""
    src.mkdir(parents=True)
    expect: dict[str, tuple[str, str]] = {}

    def put(name: str, outcome: str, words: str = "") -> Path:
        expect[name] = (outcome, words)
        return src / name

    # Audio of every shape and in every container, each a different sound so none is a duplicate of another.
    write_wav(put("song.wav", "prepared"), tone(3, 44100, 220, channels=2), 44100)
    ffmpeg(
        *sine(440), *picture(), "-shortest", "-c:v", "libx264", "-c:a", "aac", str(put("video clip.mp4", "prepared"))
    )
    ffmpeg(
        *sine(550), *picture(), "-shortest", "-c:v", "libx264", "-c:a", "libvorbis", str(put("film.mkv", "prepared"))
    )
    ffmpeg(*sine(660), *picture(), "-shortest", "-c:v", "libx264", "-c:a", "aac", str(put("screen.mov", "prepared")))
    ffmpeg(*sine(700), "-c:a", "libopus", str(put("voice.webm", "prepared")))
    ffmpeg(*sine(770), "-f", "flac", str(put("take.weird", "prepared")))  # FLAC under an unknown suffix
    ffmpeg(*sine(880), "-f", "mp3", str(put("wrong suffix.wav", "prepared")))  # an MP3 named .wav
    (src / "album.flac").mkdir()  # a folder named like an audio file
    expect["album.flac"] = ("ignored", "a folder")
    ffmpeg(*sine(990), "-c:a", "libvorbis", str(put("album.flac/side a.ogg", "prepared")))
    ffmpeg(*sine(500), "-c:a", "libvorbis", str(put("ünïcödé 曲.ogg", "prepared")))
    write_wav(put("eight channels.wav", "prepared"), tone(2, 48000, 330, channels=8), 48000)
    write_wav(put("hi-res 192k.wav", "prepared"), tone(2, 192000, 250), 192000, subtype="PCM_24")

    # A damaged MP3: ffmpeg decodes it to the end (exit 0) but complains about the broken frames.
    ffmpeg(*sine(300, 6), "-c:a", "libmp3lame", str(src / "damaged.mp3"))
    data = bytearray((src / "damaged.mp3").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 3000] = bytes(range(256)) * 11 + bytes(184)
    put("damaged.mp3", "prepared", "Header missing").write_bytes(bytes(data))

    # Float WAVs with non-finite samples: three isolated ones are repaired, a tenth of the file is not.
    few = tone(2, 16000, 350).astype(np.float32)
    few[[1000, 9000, 20000]] = [np.nan, np.inf, -np.inf]
    sf.write(put("glitches.wav", "prepared", "repaired 3 non-finite"), few, 16000, subtype="FLOAT")
    many = tone(2, 16000, 360).astype(np.float32)
    many[::10] = np.nan
    sf.write(put("broken float.wav", "skipped", "non-finite samples"), many, 16000, subtype="FLOAT")

    # A large DC offset (prepared, and the test checks that the offset is gone).
    write_wav(put("dc offset.wav", "prepared"), 0.4 + 0.3 * tone(2, 16000, 400), 16000)

    # The same audio under another name, and losslessly re-encoded: both duplicates of song.wav.
    shutil.copy(src / "song.wav", put("song_copy.wav", "skipped", "duplicate of song.wav"))
    ffmpeg("-i", str(src / "song.wav"), str(put("song_lossless.flac", "skipped", "duplicate of song.wav")))

    # No audio at all.
    ffmpeg(*picture(), "-c:v", "libx264", str(put("silent video.mp4", "ignored", "no audio stream")))
    put("tune.mid", "ignored", "MIDI").write_bytes(
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
    )
    ffmpeg(*picture(1), "-frames:v", "1", str(put("cover.png", "ignored", "no audio stream")))
    put("notes.txt", "ignored", "no media").write_text("liner notes, not audio\n")
    put("notes.mp3", "skipped", "no media").write_text("a text file named like an mp3\n")

    # Links and special files.
    os.symlink("nowhere.wav", put("dangling.wav", "ignored", "dangling symlink"))
    os.symlink("loop.wav", put("loop.wav", "ignored", "symlink loop"))
    os.symlink(".", put("album.flac/back to the top", "ignored", "already walked"))
    os.mkfifo(put("pipe.wav", "ignored", "named pipe"))

    # The classics.
    put("empty.wav", "skipped", "empty").write_bytes(b"")
    whole = (src / "song.wav").read_bytes()
    put("cut.wav", "skipped", "truncated").write_bytes(whole[: len(whole) // 3])
    write_wav(put("silence.wav", "skipped", "silent"), np.zeros(3 * 16000), 16000)
    write_wav(put("blip.wav", "skipped", "too short"), tone(0.01, 16000, 440), 16000)
    locked = "skipped" if permissions_apply else "prepared"
    write_wav(put("locked.wav", locked, "permission denied" if permissions_apply else ""), tone(2, 16000, 600), 16000)
    (src / "locked.wav").chmod(0)
    return expect
