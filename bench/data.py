"""Data pipeline speed: audio hours prepared per minute, files per second, and cold vs warm start from s3://.

    python bench/data.py [--tracks 20] [--workers 2]

Prepares a synthesised corpus (fresh output folder, so nothing is skipped), then starts SeaweedFS on loopback,
uploads it, and times what train.py does before its first step: mirror s3:// into the cache and build the mu-law
shards, once cold (empty cache) and once warm (everything cached). One table.
"""

import argparse
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from data_prep.demo_corpus import make_corpus
from data_prep.local_s3 import LocalS3
from data_prep.prepare import PrepSettings, prepare_folder
from wavenet.data import build_shards, corpus_folder, list_tracks
from wavenet.storage import S3Settings, upload_folder


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "sources", tracks=args.tracks, seed=1, log=lambda *_: None)
        report, prep_s = timed(
            lambda: prepare_folder(tmp / "sources", tmp / "corpus", PrepSettings(val_fraction=0.2), args.workers)
        )
        access, secret = "bench", secrets.token_hex(16)
        with LocalS3(tmp / "seaweedfs", access, secret, buckets=("bench",)) as s3:
            os.environ.update(
                AWS_ENDPOINT_URL_S3=s3.endpoint_url, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret
            )
            settings = S3Settings(path_style=True)
            _, upload_s = timed(lambda: upload_folder(tmp / "corpus", "s3://bench/corpus", settings))

            def start_training_data() -> None:
                folder = corpus_folder("s3://bench/corpus", tmp / "cache", settings, log=lambda *_: None)
                build_shards(list_tracks(folder), 16000, tmp / "cache", log=lambda *_: None)

            _, cold_s = timed(start_training_data)
            _, warm_s = timed(start_training_data)
            shutil.rmtree(tmp / "cache")

    hours = report["hours"]
    print(
        f"{args.tracks} synthesised tracks, {hours * 60:.1f} minutes of audio, {args.workers} workers, {os.cpu_count()} cores"
    )
    print(f"{'stage':<34} {'seconds':>8} {'rate':>28}")
    print("-" * 72)
    print(f"{'prepare (decode..split, write)':<34} {prep_s:>8.2f} {hours / (prep_s / 60):>16.1f} audio h/min")
    print(f"{'':<34} {'':>8} {args.tracks / prep_s:>16.1f} files/s")
    print(f"{'upload to S3 (loopback)':<34} {upload_s:>8.2f} {args.tracks / upload_s:>16.1f} files/s")
    print(f"{'training data start, cold cache':<34} {cold_s:>8.2f}")
    print(f"{'training data start, warm cache':<34} {warm_s:>8.2f} {cold_s / warm_s:>16.1f}x faster")


if __name__ == "__main__":
    main()
