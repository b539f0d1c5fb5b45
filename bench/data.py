"""Data pipeline speed: minutes of audio prepared per second on a collection of 1,000 tracks, by worker count, and
cold vs warm start of training data from s3://.

    python bench/data.py [--tracks 1000] [--min-seconds 10] [--max-seconds 40] [--workers 1 2]

The collection is made by ffmpeg, as collections come: WAV, MP3, FLAC, Ogg and AAC at 22-48 kHz, mono and
stereo, each track a different chord and arpeggio with noise of its own. Each worker count prepares it into a fresh folder (so
nothing is skipped), then the corpus goes up to SeaweedFS on loopback and we time what train.py does before its
first step: mirror s3:// into the cache and build the mu-law shards, cold (empty cache) and warm. One table.
"""

import argparse
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from data_prep.local_s3 import LocalS3
from data_prep.prepare import PrepSettings, prepare_folder
from wavenet.data import build_shards, corpus_folder, list_tracks
from wavenet.storage import S3Settings, upload_folder

FORMATS = [  # (suffix, sample rate, channels, codec arguments)
    ("wav", 44100, 2, []),
    ("mp3", 44100, 2, ["-c:a", "libmp3lame", "-b:a", "192k"]),
    ("flac", 48000, 2, []),
    ("ogg", 22050, 1, ["-c:a", "libvorbis"]),
    ("m4a", 44100, 2, ["-c:a", "aac"]),
]


def make_track(folder: Path, i: int, seconds: float) -> float:
    """A pad chord under an arpeggio of its notes (a new note every half second), and noise of its own."""
    suffix, rate, channels, codec = FORMATS[i % len(FORMATS)]
    root = 110 * 2 ** (random.Random(i).random() * 2)  # a different chord for every track: no duplicates
    ratios = (1, 1.26, 1.5, 1.89)
    pad = "+".join(f"0.08*sin(2*PI*{root * r:.3f}*t)" for r in ratios)
    step = "mod(floor(2*t),4)"
    note = f"if(eq({step},0),{ratios[0]},if(eq({step},1),{ratios[1]},if(eq({step},2),{ratios[2]},{ratios[3]})))"
    arpeggio = f"0.2*sin(2*PI*{2 * root:.3f}*{note}*t)*exp(-3*mod(t,0.5))"
    music = f"aevalsrc='{pad}+{arpeggio}':s={rate}:d={seconds:.2f}"
    noise = f"anoisesrc=c=pink:a=0.02:r={rate}:d={seconds:.2f}:seed={i}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", music, "-f", "lavfi", "-i", noise,
         "-filter_complex", "amix=inputs=2:normalize=0", "-ac", str(channels), *codec,
         str(folder / f"track {i:04d}.{suffix}")],
        check=True,
    )  # fmt: skip
    return seconds


def make_collection(folder: Path, tracks: int, shortest: float, longest: float) -> float:
    folder.mkdir(parents=True)
    lengths = [random.Random(i).uniform(shortest, longest) for i in range(tracks)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return sum(pool.map(lambda i: make_track(folder, i, lengths[i]), range(tracks))) / 60


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=1000)
    parser.add_argument("--min-seconds", type=float, default=10)
    parser.add_argument("--max-seconds", type=float, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        minutes, make_s = timed(
            lambda: make_collection(tmp / "sources", args.tracks, args.min_seconds, args.max_seconds)
        )
        print(f"made {args.tracks} tracks, {minutes:.0f} minutes of audio, in {make_s:.0f} s", flush=True)
        for workers in args.workers:
            shutil.rmtree(tmp / "corpus", ignore_errors=True)
            report, seconds = timed(
                lambda w=workers: prepare_folder(tmp / "sources", tmp / "corpus", PrepSettings(val_fraction=0.1), w)
            )
            assert report["prepared_now"] == args.tracks, report["skipped"]
            rows.append((f"prepare, {workers} worker(s)", seconds, minutes / seconds, args.tracks / seconds))

        access, secret = "bench", secrets.token_hex(16)
        with LocalS3(tmp / "seaweedfs", access, secret, buckets=("bench",)) as s3:
            os.environ.update(
                AWS_ENDPOINT_URL_S3=s3.endpoint_url, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret
            )
            settings = S3Settings(path_style=True)
            _, upload_s = timed(lambda: upload_folder(tmp / "corpus", "s3://bench/corpus", settings))
            rows.append(("upload to S3 (loopback)", upload_s, minutes / upload_s, args.tracks / upload_s))

            def start_training_data() -> None:
                folder = corpus_folder("s3://bench/corpus", tmp / "cache", settings, log=lambda *_: None)
                build_shards(list_tracks(folder), 16000, tmp / "cache", log=lambda *_: None)

            for label in ("training data start, cold cache", "training data start, warm cache"):
                _, seconds = timed(start_training_data)
                rows.append((label, seconds, minutes / seconds, args.tracks / seconds))

    print(f"{args.tracks} tracks, {minutes:.0f} minutes of audio, {os.cpu_count()} cores")
    print(f"{'stage':<34} {'seconds':>8} {'audio min/s':>12} {'files/s':>9} {'vs first':>9}")
    print("-" * 76)
    for label, seconds, per_s, files in rows:
        ratio = f"{rows[0][1] / seconds:.2f}x" if label.startswith("prepare") else ""
        print(f"{label:<34} {seconds:>8.1f} {per_s:>12.1f} {files:>9.1f} {ratio:>9}")


if __name__ == "__main__":
    main()
