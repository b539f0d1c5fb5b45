"""Any audio in, a training corpus out: mono 16-bit WAV at the target rate, loudness-normalised, long tracks split.

    python -m data_prep.prepare INPUT OUT [--sample-rate 16000] [--loudness -18] [--max-minutes 30] [--workers N]

INPUT is a local folder or an s3:// prefix; every file ffmpeg decodes is taken (wav of any rate, depth and channel
count, mp3, flac, ogg, m4a, ...). OUT gets the WAVs, manifest.jsonl and report.json. Sources are only read, never
changed. A re-run skips sources that are unchanged and done, so an interrupted run picks up where it stopped.
"""

import argparse
import hashlib
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import soxr
from tqdm import tqdm

from data_prep.decode import BadInput, decode_mono, probe
from wavenet.audio import write_wav
from wavenet.data import stable_split
from wavenet.files import write_text_atomic
from wavenet.storage import S3Settings, download_prefix, is_s3, sha256_file

AUDIO_SUFFIXES = {
    ".wav",
    ".wave",
    ".mp3",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".wma",
    ".webm",
}
JOURNAL = ".prepare-journal.jsonl"


@dataclass
class PrepSettings:
    sample_rate: int = 16000
    loudness_lufs: float = -18.0  # ITU-R BS.1770 integrated loudness target
    max_minutes: float = 30.0  # longer tracks are split into equal pieces no longer than this
    silence_dbfs: float = -60.0  # trimming at the ends stops at the first 20 ms frame louder than this
    val_fraction: float = 0.1


def fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def output_stem(source_key: str) -> str:
    """A readable, unique, stable file name for a source: slug of its name plus a hash of its key."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", Path(source_key).stem).strip("_")[:40] or "track"
    return f"{name}-{hashlib.sha1(source_key.encode()).hexdigest()[:8]}"


def trim_silent_ends(audio: np.ndarray, rate: int, threshold_dbfs: float) -> np.ndarray:
    frame = max(1, rate // 50)
    usable = len(audio) // frame * frame
    rms = np.sqrt(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms) > threshold_dbfs)
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0] * frame : min(len(audio), (loud[-1] + 1) * frame)]


def prepare_file(source: Path, source_key: str, out: Path, s: PrepSettings) -> list[dict]:
    """Decode, downmix, resample, normalise, trim and split one source; returns its manifest entries."""
    info = probe(source)
    audio = decode_mono(source, info)
    if info.sample_rate != s.sample_rate:
        audio = soxr.resample(audio, info.sample_rate, s.sample_rate, quality="VHQ")
    if len(audio) < 0.5 * s.sample_rate:
        raise BadInput(f"too short ({len(audio) / s.sample_rate:.2f} s of audio)")
    loudness = pyloudnorm.Meter(s.sample_rate).integrated_loudness(audio.astype(np.float64))
    if not np.isfinite(loudness) or loudness < -70:
        raise BadInput("silent (no signal above -70 LUFS)")
    audio = audio * 10 ** ((s.loudness_lufs - loudness) / 20)
    audio = audio * min(1.0, 0.99 / max(float(np.abs(audio).max()), 1e-9))  # never clip
    audio = trim_silent_ends(audio, s.sample_rate, s.silence_dbfs)
    if len(audio) < 0.5 * s.sample_rate:
        raise BadInput("silent after trimming the ends")
    pieces = np.array_split(audio, int(np.ceil(len(audio) / (s.max_minutes * 60 * s.sample_rate))))
    stem, entries = output_stem(source_key), []
    for i, piece in enumerate(pieces):
        name = f"{stem}.wav" if len(pieces) == 1 else f"{stem}-p{i:02d}.wav"
        path = write_wav(out / name, piece, s.sample_rate)
        entries.append(
            {
                "id": path.stem,
                "path": name,
                "source": source_key,
                "duration": round(len(piece) / s.sample_rate, 3),
                "sample_rate": s.sample_rate,
                "sha256": sha256_file(path),
                "split": stable_split(source_key, s.val_fraction),  # by source: all pieces of a track on one side
                "source_loudness_lufs": round(float(loudness), 2),
                "piece": [i, len(pieces)],
            }
        )
    return entries


def find_sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def load_previous(out: Path) -> dict[str, list[dict]]:
    """Entries by source from the manifest and from the journal of an interrupted run."""
    by_source: dict[str, list[dict]] = {}
    for name in ("manifest.jsonl", JOURNAL):
        path = out / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
            if name == JOURNAL:
                by_source[record["source"]] = record["entries"]
            else:
                by_source.setdefault(record["source"], []).append(record)
    return by_source


def prepare_folder(source_dir: Path, out: Path, s: PrepSettings, workers: int, source_label: str = "") -> dict:
    """Prepare every audio file under source_dir into out; returns the report (also written to report.json)."""
    out.mkdir(parents=True, exist_ok=True)
    previous = load_previous(out)
    sources = find_sources(source_dir)
    keys = {
        p: (
            f"{source_label}/{p.relative_to(source_dir).as_posix()}"
            if source_label
            else p.relative_to(source_dir).as_posix()
        )
        for p in sources
    }
    entries_by_source: dict[str, list[dict]] = {}
    todo = []
    for path in sources:
        done = previous.get(keys[path])
        if (
            done
            and done[0].get("source_fingerprint") == fingerprint(path)
            and all((out / e["path"]).is_file() for e in done)
        ):
            entries_by_source[keys[path]] = done
        else:
            todo.append(path)
    skipped = []
    with ProcessPoolExecutor(max_workers=workers) as pool, open(out / JOURNAL, "a") as journal:
        futures = {pool.submit(prepare_file, p, keys[p], out, s): p for p in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="prepare", unit="file"):
            path = futures[future]
            try:
                entries = future.result()
            except BadInput as err:
                skipped.append({"source": keys[path], "reason": str(err)})
                continue
            for e in entries:
                e["source_fingerprint"] = fingerprint(path)
            entries_by_source[keys[path]] = entries
            journal.write(json.dumps({"source": keys[path], "entries": entries}) + "\n")
            journal.flush()
    manifest = sorted((e for entries in entries_by_source.values() for e in entries), key=lambda e: e["id"])
    write_text_atomic(out / "manifest.jsonl", "".join(json.dumps(e) + "\n" for e in manifest))
    (out / JOURNAL).unlink(missing_ok=True)
    report = {
        "sources_found": len(sources),
        "prepared_now": len(todo) - len(skipped),
        "unchanged": len(sources) - len(todo),
        "skipped": sorted(skipped, key=lambda r: r["source"]),
        "tracks": len(manifest),
        "hours": round(sum(e["duration"] for e in manifest) / 3600, 4),
        "validation_tracks": sum(e["split"] == "val" for e in manifest),
        "settings": asdict(s),
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def print_report(report: dict, out: Path) -> None:
    print(
        f"{report['sources_found']} sources: {report['prepared_now']} prepared now, {report['unchanged']} unchanged, "
        f"{len(report['skipped'])} skipped. Corpus: {report['tracks']} tracks, {report['hours']:.2f} hours "
        f"({report['validation_tracks']} for validation) in {out}"
    )
    for item in report["skipped"]:
        print(f"  skipped {item['source']}: {item['reason']}")
    if report["tracks"] and not report["validation_tracks"]:
        print("  warning: no track went to validation; training needs some: raise --val-fraction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a folder of audio files, or s3://bucket/prefix")
    parser.add_argument("out", type=Path, help="the corpus folder to write")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--loudness", type=float, default=-18.0, help="target integrated loudness, LUFS (default -18)")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="split tracks longer than this (default 30)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(".cache/lofi-wavenet"), help="where s3:// input is fetched"
    )
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (default: AWS_ENDPOINT_URL_S3, else AWS)")
    parser.add_argument("--path-style", action="store_true", help="path-style S3 addressing (self-hosted servers)")
    args = parser.parse_args()

    settings = PrepSettings(args.sample_rate, args.loudness, args.max_minutes, val_fraction=args.val_fraction)
    source_dir, label = Path(args.input), ""
    if is_s3(args.input):
        source_dir, _ = download_prefix(args.input, args.cache_dir, S3Settings(args.endpoint_url, args.path_style))
        label = args.input.rstrip("/")
    elif not source_dir.is_dir():
        raise SystemExit(f"error: {source_dir} is not a folder (give a folder of audio files or an s3:// prefix)")
    print_report(prepare_folder(source_dir, args.out, settings, args.workers, label), args.out)


if __name__ == "__main__":
    main()
