"""Move a prepared corpus to and from S3.

    python -m data_prep.s3 upload data/corpus s3://bucket/corpus [--endpoint-url URL] [--path-style]
    python -m data_prep.s3 download s3://bucket/corpus [--cache-dir .cache/lofi-wavenet]

Credentials come from the standard chain only (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a role).
Uploads skip unchanged objects by sha256 and go on where an interrupted upload stopped, inside a large file too
(from the parts already on the server); downloads verify every object and write it to a temporary name first.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from wavenet.errors import UserError
from wavenet.progress import Progress
from wavenet.storage import S3Settings, download_prefix, files_to_upload, upload_folder


def progress_for(bar: Progress) -> Callable[[str], None]:
    """On a terminal a bar over the files; in a log one line per file and per part (what a resume reads back)."""

    def report(line: str) -> None:
        if not bar.on_terminal:
            print(f"  {line}", flush=True)
        elif line.endswith((" uploaded", " unchanged")):
            bar.update(1)

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload a folder to s3://bucket/prefix")
    up.add_argument("folder", type=Path)
    up.add_argument("uri")
    up.add_argument("--part-mib", type=float, default=8, help="files larger than this go up in parts this size (>= 5)")
    down = sub.add_parser("download", help="mirror s3://bucket/prefix into the local cache")
    down.add_argument("uri")
    down.add_argument("--cache-dir", type=Path, default=Path(".cache/lofi-wavenet"))
    for p in (up, down):
        p.add_argument("--endpoint-url", default=None, help="S3 endpoint (default: AWS_ENDPOINT_URL_S3, else AWS)")
        p.add_argument("--path-style", action="store_true", help="path-style addressing (most self-hosted servers)")
    args = parser.parse_args()
    settings = S3Settings(args.endpoint_url, args.path_style)
    try:
        if args.command == "upload":
            if not args.folder.is_dir():
                raise UserError(f"{args.folder} is not a folder.")
            if args.part_mib < 5:
                raise UserError(f"--part-mib {args.part_mib} is below S3's smallest part (5 MiB).")
            with Progress(len(files_to_upload(args.folder)), "upload", unit="files") as bar:
                report = upload_folder(
                    args.folder, args.uri, settings, progress_for(bar), part_size=int(args.part_mib * 2**20)
                )
            print(f"{args.uri}: {len(report.transferred)} uploaded, {len(report.unchanged)} unchanged")
        else:
            folder, report = download_prefix(args.uri, args.cache_dir, settings)
            print(f"{args.uri} -> {folder}: {len(report.transferred)} fetched, {len(report.unchanged)} already cached")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
