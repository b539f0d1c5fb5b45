"""S3 as the source of truth: one client factory, idempotent resumable uploads, verified downloads into a cache.

Every object we upload carries its sha256 in metadata (x-amz-meta-sha256). Uploads skip objects whose checksum
already matches; a large file goes up in parts, and an upload interrupted inside a file resumes from the parts the
server holds (each checked by its MD5 against the local bytes). Downloads verify the sha256 and write to a
temporary name, then rename. manifest.jsonl goes up last, so a reader never sees a manifest that names objects not
yet there. boto3 is imported where S3 is used, so that training from a folder does not need it.
"""

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from wavenet.errors import UserError
from wavenet.files import write_text_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
VERIFIED_LEDGER = ".verified.json"  # in a download folder: what was verified, by ETag and local stamp
PART_SIZE = 8 * 2**20  # files larger than this go up in parts of this size (S3's smallest part is 5 MiB)
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
    import boto3
    from botocore.config import Config

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
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

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


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=4)


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
    folder: Path,
    uri: str,
    settings: S3Settings,
    progress: Callable[[str], None] | None = None,
    part_size: int = PART_SIZE,
    workers: int = 4,
) -> TransferReport:
    """Upload every file under `folder` to s3://bucket/prefix/<relative path>; unchanged objects are skipped.

    Run it again after an interruption: what is up already is skipped by checksum, a file cut off half way goes on
    from its completed parts, the rest goes up. `progress` gets one line per file and per part.
    """
    bucket, prefix = parse_s3_uri(uri)
    client = make_client(settings)
    files = files_to_upload(folder)
    manifest = [p for p in files if p.name == MANIFEST]
    files = [p for p in files if p.name != MANIFEST]
    report = TransferReport()
    lock = threading.Lock()

    def say(line: str) -> None:  # files go up in parallel: one line at a time, never two run together
        if progress:
            with lock:
                progress(line)

    def upload(path: Path) -> None:
        key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
        digest = sha256_file(path)
        if _remote_sha256(client, bucket, key) == digest:
            report.unchanged.append(key)
            say(f"{key} unchanged")
            return
        if path.stat().st_size <= part_size:
            with open(path, "rb") as f:
                client.put_object(Bucket=bucket, Key=key, Body=f, Metadata={"sha256": digest})
        else:
            _upload_in_parts(client, bucket, key, path, digest, part_size, say)
        report.transferred.append(key)
        say(f"{key} uploaded")

    with s3_errors(uri, settings):
        client.head_bucket(Bucket=bucket)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(upload, files))
        for path in manifest:  # the manifest last
            upload(path)
    return report


def files_to_upload(folder: Path) -> list[Path]:
    """Every file under `folder` but hidden ones (our ledgers and temporary files)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _upload_in_parts(
    client, bucket: str, key: str, path: Path, digest: str, part_size: int, say: Callable[[str], None]
) -> None:
    """A multipart upload that reuses the parts an interrupted upload of the same bytes left on the server."""
    size = path.stat().st_size
    count = -(-size // part_size)
    upload_id, etags = _resumable_upload(client, bucket, key, path, part_size)
    if etags:
        say(f"{key}: resuming, {len(etags)} of {count} parts already on the server")
    else:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"sha256": digest})["UploadId"]
    with open(path, "rb") as f:
        for number in range(1, count + 1):
            if number in etags:
                continue
            f.seek((number - 1) * part_size)
            body = f.read(part_size)
            etags[number] = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )["ETag"]
            say(f"{key}: part {number}/{count} sent")
    parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    if _remote_sha256(client, bucket, key) != digest:  # the file changed since the interrupted upload began
        client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            Metadata={"sha256": digest},
            MetadataDirective="REPLACE",
        )


def _resumable_upload(client, bucket: str, key: str, path: Path, part_size: int) -> tuple[str | None, dict[int, str]]:
    """The unfinished upload of `key` with the most parts that match the local file, and those parts' ETags.

    Unfinished uploads of `key` that match nothing are aborted, so they do not linger on the server.
    """
    best_id, best = None, {}
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    for upload in (u for u in uploads if u["Key"] == key):
        matching = {}
        with open(path, "rb") as f:
            for part in _list_parts(client, bucket, key, upload["UploadId"]):
                f.seek((part["PartNumber"] - 1) * part_size)
                body = f.read(part_size)
                if part["Size"] == len(body) and part["ETag"].strip('"') == hashlib.md5(body).hexdigest():
                    matching[part["PartNumber"]] = part["ETag"]
        if len(matching) > len(best):
            if best_id:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=best_id)
            best_id, best = upload["UploadId"], matching
        else:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
    return best_id, best


def _list_parts(client, bucket: str, key: str, upload_id: str) -> Iterator[dict]:
    for page in client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        yield from page.get("Parts", [])


def _remote_sha256(client, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

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
    ledger_path = root / VERIFIED_LEDGER
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
            if obj["Key"].endswith("/"):
                continue  # a folder marker that some tools create: no content
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
        client.download_file(bucket, obj["Key"], str(tmp), Config=_transfer_config())
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
