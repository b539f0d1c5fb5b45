"""The whole demo, as the README's main command runs it, through a real S3 server on loopback:

synthesise lo-fi tracks -> prepare them -> start SeaweedFS -> upload -> train from s3:// -> generate -> stop,
then a 30 s preview of the livestream into a recording.

    python -m data_prep.demo [--name demo] [HYDRA_OVERRIDE ...]

SeaweedFS keeps its data under .cache/seaweedfs; a second run reuses everything (the upload skips unchanged
objects, the training resumes or is already done) and only generates a new clip.
"""

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

from data_prep.demo_corpus import make_corpus
from data_prep.local_s3 import LocalS3
from data_prep.prepare import PrepSettings, prepare_folder, print_report
from wavenet.storage import S3Settings, upload_folder

BUCKET = "lofi-demo"
CORPUS_URI = f"s3://{BUCKET}/corpus"
ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *overrides: str, env: dict | None = None) -> None:
    """Run one of the root scripts (train.py, generate.py, stream.py) as a user would; stop the demo if it fails."""
    subprocess.run([sys.executable, str(ROOT / script), *overrides], env=env, check=True)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="demo", help="run name: runs/NAME")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for train.py")
    args = parser.parse_args()

    step("1/6 synthesising the demo sources (data/demo_sources)")
    make_corpus(Path("data/demo_sources"), tracks=20, seed=0)
    step("2/6 preparing them into a corpus (data/demo)")
    settings = PrepSettings(val_fraction=0.15)  # two of the twenty tracks for validation
    report = prepare_folder(Path("data/demo_sources"), Path("data/demo"), settings, workers=os.cpu_count() or 1)
    print_report(report, Path("data/demo"))

    # A private S3 server for this run: credentials made up now, handed to our child processes only.
    access_key, secret_key = "lofi-demo", secrets.token_hex(16)
    step("3/6 starting SeaweedFS on 127.0.0.1 (data in .cache/seaweedfs)")
    with LocalS3(Path(".cache/seaweedfs"), access_key, secret_key, buckets=(BUCKET,)) as s3:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(env)
        print(f"S3 endpoint {s3.endpoint_url}")
        step(f"4/6 uploading data/demo to {CORPUS_URI}")
        uploaded = upload_folder(Path("data/demo"), CORPUS_URI, S3Settings(path_style=True))
        print(f"{len(uploaded.transferred)} objects uploaded, {len(uploaded.unchanged)} unchanged")
        step(f"5/6 training the demo model from {CORPUS_URI}, then generating a clip")
        run_script(
            "train.py",
            "+exp=demo",
            f"name={args.name}",
            "train.resume=auto",
            f"data.source={CORPUS_URI}",
            "data.s3.path_style=true",
            *args.overrides,
            env=env,
        )
    checkpoint = f"checkpoint=runs/{args.name}/checkpoints/best.pt"
    clip_dir = Path("runs") / args.name / "generated"
    run_script("generate.py", checkpoint, "seconds=5", f"out_dir={clip_dir}")
    step("6/6 a 30 s preview of the livestream: the same ffmpeg path as YouTube, into a recording")
    stream_dir = Path("runs") / args.name / "stream"
    run_script(
        "stream.py",
        checkpoint,
        "sink=file",
        f"workdir={stream_dir}",
        "batch_size=16",
        "track_seconds=4",
        "duration_seconds=30",
    )
    print(
        f"\nYour clip: {clip_dir / 'clip_000.wav'} (5 s, 16 kHz). Audio from training: runs/{args.name}/samples/. "
        f"Metrics: runs/{args.name}/metrics.jsonl; W&B (offline): runs/{args.name}/wandb/.\n"
        f"The livestream preview (1280x720 H.264 + AAC, what YouTube would get): {stream_dir / 'preview.flv'}. "
        f"Watch it: ffplay {stream_dir / 'preview.flv'} (or open it in VLC)."
    )


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as err:
        sys.exit(err.returncode)
