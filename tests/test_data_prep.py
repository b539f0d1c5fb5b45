"""data_prep.prepare on a batch of real files in many formats, good and bad."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.conftest import ROOT
from tests.s3_server import tone, write_wav


def make_mixed_folder(folder):
    """A pile of music as researchers bring it: several formats, rates, depths and channel counts, and junk."""
    folder.mkdir()
    write_wav(folder / "cd.wav", tone(3, 44100, 220, channels=2), 44100)
    write_wav(folder / "studio.wav", tone(2, 96000, 330, channels=8), 96000, subtype="PCM_24")
    write_wav(folder / "long_mix.wav", tone(7, 22050, 440), 22050)
    for name, codec in (("a.mp3", []), ("b.flac", []), ("c.ogg", ["-c:a", "libvorbis"]), ("d.m4a", ["-c:a", "aac"])):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=262:d=3", "-ac", "2", *codec, str(folder / name)],
            check=True,
        )
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("this is not an mp3, only a text file with the wrong name\n")
    whole = (folder / "cd.wav").read_bytes()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 3])
    write_wav(folder / "silence.wav", np.zeros(3 * 16000), 16000)
    return folder


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def prepare(src, out, *args):
    cmd = [
        sys.executable,
        "-m",
        "data_prep.prepare",
        str(src),
        str(out),
        "--workers",
        "2",
        "--max-minutes",
        "0.05",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)


def test_mixed_batch_good_prepared_bad_reported_sources_untouched(tmp_path):
    src = make_mixed_folder(tmp_path / "music")
    before = digests(src)
    proc = prepare(src, tmp_path / "corpus")
    assert digests(src) == before, "sources are never modified"

    report = json.loads((tmp_path / "corpus" / "report.json").read_text())
    reasons = {item["source"]: item["reason"] for item in report["skipped"]}
    assert set(reasons) == {"empty.wav", "notes.mp3", "cut.wav", "silence.wav"}
    assert "empty" in reasons["empty.wav"]
    assert "not a readable audio file" in reasons["notes.mp3"]
    assert "truncated" in reasons["cut.wav"]
    assert "silent" in reasons["silence.wav"]
    for source in reasons:
        assert f"skipped {source}" in proc.stdout

    entries = [json.loads(line) for line in (tmp_path / "corpus" / "manifest.jsonl").read_text().splitlines()]
    by_source = {}
    for e in entries:
        by_source.setdefault(e["source"], []).append(e)
    assert set(by_source) == {"cd.wav", "studio.wav", "long_mix.wav", "a.mp3", "b.flac", "c.ogg", "d.m4a"}
    assert len(by_source["long_mix.wav"]) == 3, "7 s split at a 3 s limit gives 3 pieces"
    assert len({e["split"] for e in by_source["long_mix.wav"]}) == 1, "a track never straddles train and val"
    for e in entries:
        audio, rate = sf.read(tmp_path / "corpus" / e["path"])
        info = sf.info(tmp_path / "corpus" / e["path"])
        assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert e["duration"] <= 3.0 + 1e-3
        assert hashlib.sha256((tmp_path / "corpus" / e["path"]).read_bytes()).hexdigest() == e["sha256"]
        assert np.abs(audio).max() > 0.05
    assert report["tracks"] == len(entries)


def test_rerun_skips_what_is_done_and_keeps_splits_stable_under_additions(tmp_path):
    src = tmp_path / "music"
    src.mkdir()
    for i in range(6):
        write_wav(src / f"t{i}.wav", tone(1.5, 22050, 200 + 50 * i), 22050)
    prepare(src, tmp_path / "corpus")
    first = {e["source"]: e for e in map(json.loads, (tmp_path / "corpus" / "manifest.jsonl").read_text().splitlines())}
    write_wav(src / "t_new.wav", tone(1.5, 22050, 600), 22050)
    proc = prepare(src, tmp_path / "corpus")
    assert "1 prepared now, 6 unchanged" in proc.stdout
    second = {
        e["source"]: e for e in map(json.loads, (tmp_path / "corpus" / "manifest.jsonl").read_text().splitlines())
    }
    assert {k: second[k] for k in first} == first
