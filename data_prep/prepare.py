"""Any audio in, a training corpus out: mono 16-bit WAV at the target rate, loudness-normalised, long tracks split.

    python -m data_prep.prepare INPUT OUT [--sample-rate 16000] [--loudness -18] [--max-minutes 30] [--workers N]

INPUT is a local folder or an s3:// prefix. Every file with an audio stream is taken, whatever its name (wav of
any rate, depth and channel count, mp3, flac, ogg, m4a, the sound of mp4/mkv/webm/mov videos, ...). OUT gets the
WAVs, manifest.jsonl and report.json, which lists every entry under INPUT as prepared, skipped (audio we cannot
use) or ignored (not audio), with the reason. Sources are only read, never changed. The same audio under two names
is kept once. A re-run redoes nothing that is unchanged, so an interrupted run picks up where it stopped.
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

from data_prep.decode import BadInput, NotAudio, decode_mono, probe
from data_prep.duplicates import audio_fingerprint, drop_duplicates
from data_prep.repair import remove_dc, repair_non_finite
from data_prep.walk import walk
from wavenet.audio import write_wav
from wavenet.data import stable_split
from wavenet.errors import UserError
from wavenet.files import write_jsonl_atomic, write_text_atomic
from wavenet.progress import Progress
from wavenet.storage import VERIFIED_LEDGER, S3Settings, download_prefix, is_s3, sha256_file

# Names that promise audio: such a file without a readable audio stream is "skipped" (a broken track worth a look),
# any other file without one is "ignored". What is prepared is decided by the content alone.
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
SHOWN_AT_MOST = 100  # lines of skipped, ignored and warnings on the terminal; report.json has them all
LEDGER = ".prepare-ledger.jsonl"  # every source's last judgement, appended as files finish


@dataclass
class PrepSettings:
    sample_rate: int = 16000
    loudness_lufs: float = -18.0  # ITU-R BS.1770 integrated loudness target
    max_minutes: float = 30.0  # longer tracks are split into equal pieces no longer than this
    silence_dbfs: float = -60.0  # trimming at the ends stops at the first 20 ms frame louder than this
    val_fraction: float = 0.1
    min_seconds: float = 0.5  # shorter audio is skipped (raise it to leave out sound effects and jingles)


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


def named_like_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def judge_file(source: Path, source_key: str, out: Path, s: PrepSettings) -> dict:
    """Prepare one file, or say why not: a ledger record with its outcome, reason, warnings and manifest entries."""
    record = {"source": source_key, "fingerprint": fingerprint(source), "outcome": "prepared", "warnings": []}
    try:
        record["entries"] = prepare_file(source, source_key, out, s, record)
    except NotAudio as err:
        # A file named like audio that holds none is a broken track worth a look; anything else is simply not ours.
        record.update(outcome="skipped" if named_like_audio(source) else "ignored", reason=str(err))
    except BadInput as err:
        record.update(outcome="skipped", reason=str(err))
    except Exception as err:  # one odd file must not end a run over thousands; the report names it
        record.update(outcome="skipped", reason=f"unexpected error ({type(err).__name__}: {err}); please report it")
    return record


def prepare_file(source: Path, source_key: str, out: Path, s: PrepSettings, record: dict) -> list[dict]:
    """Decode, mend, resample, remove DC, normalise, trim and split one source; returns its manifest entries."""
    info = probe(source)
    decoded = decode_mono(source, info)
    record["warnings"] += decoded.warnings
    record["audio_sha256"] = hashlib.sha256(decoded.audio.tobytes()).hexdigest()
    audio, repaired = repair_non_finite(decoded.audio)
    if repaired:
        record["warnings"].append(f"repaired {repaired} non-finite (NaN or infinite) samples from their neighbours")
    if info.sample_rate != s.sample_rate:
        audio = soxr.resample(audio, info.sample_rate, s.sample_rate, quality="VHQ")
    if len(audio) < s.min_seconds * s.sample_rate:
        raise BadInput(f"too short ({len(audio) / s.sample_rate:.2f} s of audio; at least {s.min_seconds:g} s)")
    audio = remove_dc(audio, s.sample_rate)
    loudness = pyloudnorm.Meter(s.sample_rate).integrated_loudness(audio.astype(np.float64))
    if not np.isfinite(loudness) or loudness < -70:
        raise BadInput("silent (no signal above -70 LUFS)")
    audio = audio * 10 ** ((s.loudness_lufs - loudness) / 20)
    audio = audio * min(1.0, 0.99 / max(float(np.abs(audio).max()), 1e-9))  # never clip
    audio = trim_silent_ends(audio, s.sample_rate, s.silence_dbfs)
    if len(audio) < s.min_seconds * s.sample_rate:
        raise BadInput(f"too short after trimming its silent ends ({len(audio) / s.sample_rate:.2f} s)")
    record["duration"] = round(len(audio) / s.sample_rate, 3)
    record["audio_fingerprint"] = audio_fingerprint(audio, s.sample_rate)
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


def load_ledger(out: Path) -> dict[str, dict]:
    """The last judgement of every source, from earlier runs and from an interrupted one."""
    records: dict[str, dict] = {}
    path = out / LEDGER
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
            records[record["source"]] = record
    return records


def still_valid(record: dict | None, path: Path, out: Path) -> bool:
    """An earlier judgement holds when the source is unchanged and what it made is still there."""
    return (
        record is not None
        and record.get("fingerprint") == fingerprint(path)
        and all((out / e["path"]).is_file() for e in record.get("entries", []))
    )


def prepare_folder(
    source_dir: Path,
    out: Path,
    s: PrepSettings,
    workers: int,
    source_label: str = "",
    exclude: dict[Path, str | None] | None = None,
) -> dict:
    """Prepare every file under source_dir into out; returns the report (also written to report.json).

    Every entry under source_dir is in the report: prepared, skipped (audio we cannot use) or ignored (not audio),
    each with its reason. Files are judged by what ffprobe finds inside, whatever their names. `exclude`: paths
    set aside, with the reason the report gives (None: our own files, left out unlisted).
    """
    out.mkdir(parents=True, exist_ok=True)
    previous = load_ledger(out)
    records: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    todo = []
    for entry in walk(source_dir, exclude={out: None, **(exclude or {})}):
        key = f"{source_label}/{entry.relative}" if source_label else entry.relative
        paths[key] = entry.path
        if entry.outcome:
            records[key] = {"source": key, "outcome": entry.outcome, "reason": entry.reason}
        elif still_valid(previous.get(key), entry.path, out):
            records[key] = {**previous[key], "unchanged": True}
        else:
            todo.append((entry.path, key))
    # A dropped duplicate stands only while the copy it duplicates is still kept as it was.
    for key, record in list(records.items()):
        keeper = records.get(record.get("duplicate_of", ""), {})
        if record.get("duplicate_of") and not (keeper.get("unchanged") and keeper["outcome"] == "prepared"):
            todo.append((paths[key], key))
            del records[key]

    with (
        ProcessPoolExecutor(max_workers=max(1, workers)) as pool,
        open(out / LEDGER, "a") as ledger,
        Progress(len(todo), "prepare", unit="files", enabled=bool(todo)) as progress,
    ):
        futures = [pool.submit(judge_file, path, key, out, s) for path, key in todo]
        for future in as_completed(futures):
            record = future.result()
            records[record["source"]] = record
            ledger.write(json.dumps(record) + "\n")  # a killed run keeps what it finished
            ledger.flush()
            progress.update(1)
    drop_duplicates(records, out)

    ordered = [records[k] for k in sorted(records)]
    manifest = sorted((e for r in ordered for e in r.get("entries", [])), key=lambda e: e["id"])
    write_jsonl_atomic(out / "manifest.jsonl", manifest)
    kept = [{k: v for k, v in r.items() if k != "unchanged"} for r in ordered if "fingerprint" in r]
    write_jsonl_atomic(out / LEDGER, kept)
    report = build_report(ordered, manifest, s)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def build_report(records: list[dict], manifest: list[dict], s: PrepSettings) -> dict:
    def listed(outcome: str) -> list[dict]:
        return [{"source": r["source"], "reason": r["reason"]} for r in records if r["outcome"] == outcome]

    prepared = [r for r in records if r["outcome"] == "prepared"]
    return {
        "entries": [
            {
                "source": r["source"],
                "outcome": r["outcome"],
                **({"reason": r["reason"]} if r.get("reason") else {}),
                **({"warnings": r["warnings"]} if r.get("warnings") else {}),
                **({"tracks": [e["id"] for e in r["entries"]]} if r.get("entries") else {}),
            }
            for r in records
        ],
        "sources_found": sum("fingerprint" in r for r in records),
        "prepared_now": sum(not r.get("unchanged") for r in prepared),
        "unchanged": sum(bool(r.get("unchanged")) for r in prepared),
        "skipped": listed("skipped"),
        "ignored": listed("ignored"),
        "duplicates": [
            {"source": r["source"], "duplicate_of": r["duplicate_of"]} for r in records if r.get("duplicate_of")
        ],
        "with_warnings": sum(bool(r.get("warnings")) for r in prepared),
        "tracks": len(manifest),
        "hours": round(sum(e["duration"] for e in manifest) / 3600, 4),
        "validation_tracks": sum(e["split"] == "val" for e in manifest),
        "settings": asdict(s),
    }


def print_report(report: dict, out: Path) -> None:
    print(
        f"{report['sources_found']} sources: {report['prepared_now']} prepared now, {report['unchanged']} unchanged, "
        f"{len(report['skipped'])} skipped, {len(report['ignored'])} ignored. Corpus: {report['tracks']} tracks, {report['hours']:.2f} hours "
        f"({report['validation_tracks']} for validation) in {out}"
    )
    folders = [item for item in report["ignored"] if item["reason"].startswith("a folder")]
    listed = [
        *(f"skipped {item['source']}: {item['reason']}" for item in report["skipped"]),
        *(f"ignored {item['source']}: {item['reason']}" for item in report["ignored"] if item not in folders),
        *(f"warning {e['source']}: {w}" for e in report["entries"] for w in e.get("warnings", [])),
    ]
    for line in listed[:SHOWN_AT_MOST]:
        print(f"  {line}")
    if len(listed) > SHOWN_AT_MOST:
        print(f"  ... and {len(listed) - SHOWN_AT_MOST} more lines like these")
    print(
        f"  ({len(folders)} folder{'s' * (len(folders) != 1)} walked; every entry with its outcome: {out / 'report.json'})"
    )
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
    parser.add_argument("--min-seconds", type=float, default=0.5, help="skip shorter audio (default 0.5)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(".cache/lofi-wavenet"), help="where s3:// input is fetched"
    )
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (default: AWS_ENDPOINT_URL_S3, else AWS)")
    parser.add_argument("--path-style", action="store_true", help="path-style S3 addressing (self-hosted servers)")
    args = parser.parse_args()

    settings = PrepSettings(
        args.sample_rate, args.loudness, args.max_minutes, val_fraction=args.val_fraction, min_seconds=args.min_seconds
    )
    source_dir, label, exclude = Path(args.input), "", {}
    try:
        if is_s3(args.input):
            s3 = S3Settings(args.endpoint_url, args.path_style)
            source_dir, _ = download_prefix(args.input, args.cache_dir, s3)
            label, exclude = args.input.rstrip("/"), {source_dir / VERIFIED_LEDGER: None}
        elif not source_dir.is_dir():
            raise UserError(f"{source_dir} is not a folder (give a folder of audio files or an s3:// prefix)")
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    print_report(prepare_folder(source_dir, args.out, settings, args.workers, label, exclude), args.out)


if __name__ == "__main__":
    main()
