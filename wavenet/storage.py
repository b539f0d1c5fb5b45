"""S3 as the source of truth: one client factory, idempotent resumable uploads, verified downloads into a cache.

Every object we upload carries its sha256 in metadata (x-amz-meta-sha256). Uploads skip objects whose checksum
already matches; downloads verify it and write to a temporary name, then rename. manifest.jsonl goes up last, so
a reader never sees a manifest that names objects not yet there.
"""

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from wavenet.errors import UserError
from wavenet.files import write_text_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
TRANSFER = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=4)
CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}


@dataclass
class S3Settings:
    endpoint_url: str | None = None  # default: AWS_ENDPOINT_URL_S3, else AWS itself
    path_style: bool = False  # bucket in the path (most self-hosted servers) instead of the host name
    max_attempts: int = 5  # attempts per request, with exponential backoff


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    if not is_s3(uri):
        raise UserError(f"{uri} is not an s3:// URI (s3://bucket/prefix).")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise UserError(f"{uri} names no bucket (s3://bucket/prefix).")
    return bucket, prefix.strip("/")


def endpoint_of(settings: S3Settings) -> str | None:
    return settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or None


def make_client(settings: S3Settings | None = None):
    """The one boto3 S3 client factory: credentials from the standard chain only (environment, profile, role)."""
    settings = settings or S3Settings()
    config = Config(
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_of(settings), config=config)


@contextlib.contextmanager
def s3_errors(uri: str, settings: S3Settings) -> Iterator[None]:
    """Turn boto3's failures into one clear message that says what to check."""
    where = endpoint_of(settings) or "AWS S3"
    try:
        yield
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERRORS or code == "403":
            raise UserError(
                f"{where} refused the credentials for {uri} ({code}). Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE) in the environment."
            ) from err
        if code in ("NoSuchBucket", "404"):  # head_bucket answers a bare 404
            raise UserError(f"bucket of {uri} does not exist at {where}. Create it, or fix the URI.") from err
        raise UserError(f"S3 request for {uri} at {where} failed: {code or err}") from err
    except EndpointConnectionError as err:
        raise UserError(
            f"cannot reach the S3 endpoint {where} for {uri} after {settings.max_attempts} attempts. Is the server up? "
            "Set data.s3.endpoint_url or AWS_ENDPOINT_URL_S3."
        ) from err
    except BotoCoreError as err:
        raise UserError(f"S3 access to {uri} at {where} failed: {err}") from err


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def safe_destination(root: Path, relative_key: str) -> Path | None:
    """root / key, or None when the key would land outside root (absolute, '..', or empty parts)."""
    parts = PurePosixPath(relative_key).parts
    if not parts or relative_key.startswith("/") or any(p in ("..", ".", "") for p in parts):
        return None
    dest = (root / Path(*parts)).resolve()
    return dest if dest.is_relative_to(root.resolve()) else None


@dataclass
class TransferReport:
    transferred: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # keys that would escape the cache folder


def upload_folder(
    folder: Path, uri: str, settings: S3Settings, progress: Callable[[str], None] | None = None
) -> TransferReport:
    """Upload every file under `folder` to s3://bucket/prefix/<relative path>; unchanged objects are skipped.

    Run it again after an interruption: what is up already is skipped by checksum, the rest goes up.
    """
    bucket, prefix = parse_s3_uri(uri)
    client = make_client(settings)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    files.sort(key=lambda p: p.name == MANIFEST)  # the manifest last
    report = TransferReport()
    with s3_errors(uri, settings):
        client.head_bucket(Bucket=bucket)
        for path in files:
            key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
            digest = sha256_file(path)
            if _remote_sha256(client, bucket, key) == digest:
                report.unchanged.append(key)
            else:
                client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}, Config=TRANSFER)
                report.transferred.append(key)
            if progress:
                progress(key)
    return report


def _remote_sha256(client, bucket: str, key: str) -> str | None:
    try:
        return client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def download_prefix(uri: str, cache_dir: Path, settings: S3Settings, workers: int = 8) -> tuple[Path, TransferReport]:
    """Mirror s3://bucket/prefix into cache_dir/s3/bucket/prefix, verified; returns (local folder, report).

    A cached file is trusted when its size and modification time match what we recorded after verifying it;
    anything else (new, changed, corrupted) is fetched again to a temporary name, checked, then renamed.
    """
    bucket, prefix = parse_s3_uri(uri)
    root = (Path(cache_dir) / "s3" / bucket / prefix).resolve()
    root.mkdir(parents=True, exist_ok=True)
    client = make_client(settings)
    ledger_path = root / ".verified.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    report = TransferReport()
    with s3_errors(uri, settings):
        objects = list(_list_objects(client, bucket, prefix))
        if not objects:
            raise UserError(
                f"{uri} holds no objects. Upload a prepared corpus there first (python -m data_prep.s3 upload FOLDER {uri})."
            )
        jobs = []
        for obj in objects:
            rel = obj["Key"][len(prefix) :].lstrip("/") if prefix else obj["Key"]
            dest = safe_destination(root, rel)
            if dest is None:
                log.warning(f"skipping s3://{bucket}/{obj['Key']}: its key would write outside the cache folder")
                report.refused.append(obj["Key"])
                continue
            seen = ledger.get(rel)
            if dest.is_file() and seen and seen["etag"] == obj["ETag"] and _stamp(dest) == seen["stamp"]:
                report.unchanged.append(obj["Key"])
            else:
                jobs.append((obj, rel, dest))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for obj, rel, stamp in pool.map(lambda job: _fetch_verified(client, bucket, *job), jobs):
                ledger[rel] = {"etag": obj["ETag"], "stamp": stamp}
                report.transferred.append(obj["Key"])
    write_text_atomic(ledger_path, json.dumps(ledger))
    return root, report


def _list_objects(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        yield from page.get("Contents", [])


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _fetch_verified(client, bucket: str, obj: dict, rel: str, dest: Path) -> tuple[dict, str, list[int]]:
    """Download one object to a temporary name, check its sha256 against the metadata, rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = _remote_sha256(client, bucket, obj["Key"])
    if dest.is_file() and expected and sha256_file(dest) == expected:
        return obj, rel, _stamp(dest)  # intact, only not yet in the ledger
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        client.download_file(bucket, obj["Key"], str(tmp), Config=TRANSFER)
        if expected and sha256_file(tmp) != expected:
            raise UserError(f"s3://{bucket}/{obj['Key']} does not match its sha256 after download; upload it again.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return obj, rel, _stamp(dest)


def local_copy(path_or_uri: str, cache_dir: Path, settings: S3Settings) -> Path:
    """A local path for a file given as a path or as s3://bucket/key (fetched, verified, into the cache)."""
    if not is_s3(path_or_uri):
        return Path(path_or_uri)
    bucket, key = parse_s3_uri(path_or_uri)
    dest = safe_destination((Path(cache_dir) / "s3" / bucket).resolve(), key)
    if dest is None or not key:
        raise UserError(f"{path_or_uri} does not name a file in the bucket.")
    client = make_client(settings)
    with s3_errors(path_or_uri, settings):
        obj = client.head_object(Bucket=bucket, Key=key)
        _fetch_verified(client, bucket, {"Key": key, "ETag": obj["ETag"]}, key, dest)
    return dest
