"""data_prep.prepare on a batch of real files in many formats, good and bad."""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.decode import BadInput
from data_prep.repair import repair_non_finite
from tests.conftest import ROOT
from tests.odd_corpus import ffmpeg, make_odd_corpus, unprivileged_prefix
from tests.s3_server import BUCKET, tone, write_wav
from wavenet.storage import S3Settings, make_client


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
    assert "no media ffmpeg can read" in reasons["notes.mp3"]
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


def snapshot(folder: Path) -> dict[str, object]:
    """What a source folder holds, byte for byte where we may read it (os.lstat for links and locked files)."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK):
            seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            seen[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, os.readlink(path) if path.is_symlink() else "")
    return seen


@pytest.fixture
def shared_tmp():
    """A scratch folder that an unprivileged user can use too (pytest's own tmp_path is private to us)."""
    folder = Path(tempfile.mkdtemp(prefix="lofi-odd-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


def outcomes(report: dict) -> dict[str, dict]:
    return {e["source"]: e for e in report["entries"]}


def check_outcomes(report: dict, expect: dict[str, tuple[str, str]], prefix: str = "") -> None:
    got = outcomes(report)
    assert set(got) == {prefix + name for name in expect}, "every entry is in the report, and nothing else"
    for name, (outcome, words) in expect.items():
        entry = got[prefix + name]
        said = " ".join([entry.get("reason", ""), *entry.get("warnings", [])])
        assert entry["outcome"] == outcome, f"{name}: {entry}"
        assert words in said, f"{name}: expected {words!r} in {said!r}"


def test_odd_corpus_every_entry_accounted_for_sources_untouched_second_run_idle(shared_tmp):
    run_as = unprivileged_prefix()
    src, out = shared_tmp / "music", shared_tmp / "corpus"
    expect = make_odd_corpus(src, permissions_apply=run_as is not None)
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    before = snapshot(src)
    cmd = [*(run_as or []), sys.executable, "-m", "data_prep.prepare", str(src), str(out), "--workers", "2"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    assert snapshot(src) == before, "sources are never modified"
    assert "\r" not in first.stderr and re.search(r"prepare: (\d+)/\1 files \(100%\)", first.stderr), first.stderr
    report = json.loads((out / "report.json").read_text())
    check_outcomes(report, expect)
    for name, (outcome, words) in expect.items():
        if outcome != "prepared" and words != "a folder":  # folders are counted, not listed, on the terminal
            assert f"{outcome} {name}:" in first.stdout, f"the printed report names {name}"

    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    prepared = {name for name, (outcome, _) in expect.items() if outcome == "prepared"}
    assert {e["source"] for e in manifest} == prepared
    for e in manifest:
        audio, rate = sf.read(out / e["path"])
        assert rate == 16000 and audio.ndim == 1 and np.isfinite(audio).all()
        assert np.abs(audio).max() > 0.05, e["source"]
        assert abs(audio.mean()) < 2e-3, f"{e['source']}: DC offset {audio.mean():.4f} survived"
    assert len({hashlib.sha256(sf.read(out / e["path"])[0].tobytes()).digest() for e in manifest}) == len(manifest)
    assert report["duplicates"] == [
        {"source": "song_copy.wav", "duplicate_of": "song.wav"},
        {"source": "song_lossless.flac", "duplicate_of": "song.wav"},
    ]

    manifest_bytes = (out / "manifest.jsonl").read_bytes()
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    again = json.loads((out / "report.json").read_text())
    assert again["prepared_now"] == 0 and again["unchanged"] == len(prepared)
    assert again["entries"] == report["entries"] and again["duplicates"] == report["duplicates"]
    assert (out / "manifest.jsonl").read_bytes() == manifest_bytes
    assert "0 prepared now" in second.stdout
    assert snapshot(src) == before


@pytest.mark.slow
def test_odd_corpus_from_s3(s3_env, shared_tmp, tmp_path):
    """The same odd corpus as objects in a bucket (what S3 can hold: files, odd keys, a folder marker)."""
    src = tmp_path / "music"
    expect = make_odd_corpus(src, permissions_apply=False)
    client = make_client(S3Settings(path_style=True))
    uploaded = {}
    for name, (outcome, words) in expect.items():
        path = src / name
        if path.is_file() and not path.is_symlink() and name != "locked.wav":
            client.put_object(Bucket=BUCKET, Key=f"odd/{name}", Body=path.read_bytes())
            uploaded[name] = (outcome, words.replace("duplicate of ", f"duplicate of s3://{BUCKET}/odd/"))
    client.put_object(Bucket=BUCKET, Key="odd/album.flac/", Body=b"")  # a folder marker, as consoles make them
    uploaded["album.flac"] = ("ignored", "a folder")
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "data_prep.prepare", f"s3://{BUCKET}/odd", str(out), "--path-style"]
    subprocess.run(
        cmd + ["--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    check_outcomes(json.loads((out / "report.json").read_text()), uploaded, prefix=f"s3://{BUCKET}/odd/")


def test_few_non_finite_samples_are_repaired_many_are_refused():
    audio = np.sin(np.arange(50000) / 10).astype(np.float32)
    audio[[10, 20000]] = [np.nan, np.inf]
    fixed, count = repair_non_finite(audio)
    assert count == 2 and np.isfinite(fixed).all()
    assert abs(fixed[10] - (audio[9] + audio[11]) / 2) < 1e-6
    run = audio.copy()
    run[100:110] = np.nan  # ten in a row: a hole, not a glitch
    with pytest.raises(BadInput, match=r"non-finite samples: 12 of 50,000 .*longest run 10"):
        repair_non_finite(run)


def test_the_same_music_encoded_differently_is_kept_once_and_different_music_always(corpus, tmp_path):
    src = tmp_path / "music"
    shutil.copytree(corpus, src)
    originals = sorted(p.name for p in src.glob("*.wav"))
    ffmpeg("-i", str(src / originals[0]), "-b:a", "128k", str(src / "first again.mp3"))
    ffmpeg("-i", str(src / originals[1]), "-ar", "44100", "-c:a", "libvorbis", str(src / "second again.ogg"))
    prepare(src, tmp_path / "corpus")
    report = json.loads((tmp_path / "corpus" / "report.json").read_text())
    got = outcomes(report)
    assert all(got[name]["outcome"] == "prepared" for name in originals), "different tracks are never duplicates"
    for copy, original in (("first again.mp3", originals[0]), ("second again.ogg", originals[1])):
        assert got[copy]["outcome"] == "skipped"
        assert got[copy]["reason"].startswith(f"duplicate of {original} (the same music, encoded differently")
