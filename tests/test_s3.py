"""S3 against a real SeaweedFS on loopback: round trip, idempotent and resumable transfers, clear failures."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.demo_corpus import make_corpus
from data_prep.local_s3 import LocalS3, free_port, local_sockets
from tests.conftest import FAST_TRAIN, ROOT, run_script, wait_for
from tests.s3_server import BUCKET
from tests.test_data_prep import make_mixed_folder, prepare
from wavenet.errors import UserError
from wavenet.storage import S3Settings, download_prefix, make_client, safe_destination, sha256_file, upload_folder

SETTINGS = S3Settings(path_style=True, max_attempts=2)


@pytest.mark.slow
def test_round_trip_prepare_upload_train_from_s3_matches_local(s3_env, corpus, tmp_path):
    mixed = tmp_path / "corpus"
    prepare(make_mixed_folder(tmp_path / "music"), mixed)
    make_corpus(mixed, tracks=6, seed=0, log=lambda *_: None)  # adds demo tracks (and their manifest lines)
    uri = f"s3://{BUCKET}/round-trip"
    report = upload_folder(mixed, uri, SETTINGS)
    assert report.transferred[-1] == "round-trip/manifest.jsonl", "the manifest goes up last"

    common = [*FAST_TRAIN, "train.max_steps=2", "train.val_interval=2", "data.s3.path_style=true"]
    from_s3 = run_script(
        "train.py", *common, f"data.source={uri}", "name=s3", f"data.cache_dir={tmp_path / 'c1'}", cwd=tmp_path
    )
    run_script(
        "train.py", *common, f"data.source={mixed}", "name=local", f"data.cache_dir={tmp_path / 'c2'}", cwd=tmp_path
    )
    assert "fetching s3://" in from_s3.stdout + from_s3.stderr
    s3_shards = sorted((tmp_path / "c1" / "shards").rglob("*.u8"))
    local_shards = sorted((tmp_path / "c2" / "shards").rglob("*.u8"))
    assert [p.name for p in s3_shards] == ["train.u8", "val.u8"]
    assert [p.read_bytes() for p in s3_shards] == [p.read_bytes() for p in local_shards]

    again = run_script(
        "train.py", *common, f"data.source={uri}", "name=s3b", f"data.cache_dir={tmp_path / 'c1'}", cwd=tmp_path
    )
    assert "0 objects fetched" in again.stdout + again.stderr, "a second run starts from the cache"


def test_second_upload_uploads_nothing(s3_env, corpus):
    uri = f"s3://{BUCKET}/idempotent"
    first = upload_folder(corpus, uri, SETTINGS)
    second = upload_folder(corpus, uri, SETTINGS)
    assert len(first.transferred) == 7 and second.transferred == []
    assert len(second.unchanged) == 7


def test_upload_killed_half_way_resumes_and_completes(s3_env, corpus, tmp_path):
    uri = f"s3://{BUCKET}/resumed"
    cmd = [sys.executable, "-m", "data_prep.s3", "upload", str(corpus), uri, "--path-style"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ)
    assert proc.stdout.readline().strip().startswith("resumed/")
    assert proc.stdout.readline().strip().startswith("resumed/")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    uploaded, unchanged = map(
        int, done.stdout.split(": ")[-1].replace(" uploaded,", "").replace(" unchanged", "").split()
    )
    assert unchanged >= 2 and uploaded + unchanged == 7
    folder, _ = download_prefix(uri, tmp_path / "cache", SETTINGS)
    assert {p.name: sha256_file(p) for p in folder.iterdir() if not p.name.startswith(".")} == {
        p.name: sha256_file(p) for p in corpus.iterdir()
    }


def test_corrupted_cache_object_is_detected_and_fetched_again(s3_env, corpus, tmp_path):
    uri = f"s3://{BUCKET}/cached"
    upload_folder(corpus, uri, SETTINGS)
    folder, first = download_prefix(uri, tmp_path, SETTINGS)
    assert len(first.transferred) == 7
    victim = folder / "demo_000_001.wav"
    good = sha256_file(victim)
    data = bytearray(victim.read_bytes())
    data[5000:5010] = b"XXXXXXXXXX"  # same size, different bytes
    victim.write_bytes(bytes(data))
    _, second = download_prefix(uri, tmp_path, SETTINGS)
    assert second.transferred == ["cached/demo_000_001.wav"]
    assert sha256_file(victim) == good


def no_partial_files(cache: Path) -> bool:
    return not cache.exists() or not [p for p in cache.rglob("*") if p.is_file() and p.name != ".verified.json"]


def test_wrong_credentials_fail_clearly(s3_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(UserError, match="refused the credentials.*AWS_ACCESS_KEY_ID"):
        download_prefix(f"s3://{BUCKET}/cached", tmp_path / "cache", SETTINGS)
    assert no_partial_files(tmp_path / "cache")


def test_missing_bucket_fails_clearly(s3_env, tmp_path):
    with pytest.raises(UserError, match="bucket .*does not exist"):
        download_prefix("s3://no-such-bucket-here/x", tmp_path / "cache", SETTINGS)
    with pytest.raises(UserError, match="bucket .*does not exist"):
        upload_folder(tmp_path, "s3://no-such-bucket-here/x", SETTINGS)
    assert no_partial_files(tmp_path / "cache")


def test_server_down_fails_clearly_after_retries(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x" * 8)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y" * 16)
    down = S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", path_style=True, max_attempts=3)
    with pytest.raises(UserError, match="cannot reach the S3 endpoint .* after 3 attempts"):
        download_prefix(f"s3://{BUCKET}/cached", tmp_path / "cache", down)
    assert no_partial_files(tmp_path / "cache")


def test_train_py_reports_s3_failures_without_a_traceback(s3_env, tmp_path):
    proc = run_script("train.py", *FAST_TRAIN, "data.source=s3://no-such-bucket-here/corpus", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "does not exist" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("key", ["../outside.wav", "a/../../outside.wav", "/etc/passwd", "..", "", "a/.."])
def test_keys_that_would_escape_the_cache_are_refused(tmp_path, key):
    assert safe_destination(tmp_path / "cache", key) is None


def test_ordinary_keys_stay_inside_the_cache(tmp_path):
    root = tmp_path / "cache"
    for key in ["a.wav", "deep/er/b.wav", "...", "%2e%2e/x", "..%2fx", "a/./b.wav", "a//b"]:
        dest = safe_destination(root, key)
        assert dest is not None and dest.is_relative_to(root.resolve())


def test_upload_killed_inside_a_file_resumes_from_its_completed_parts(s3_env, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "long_mix.wav").write_bytes(os.urandom(30 * 2**20))  # six parts of 5 MiB
    uri = f"s3://{BUCKET}/in-file"
    cmd = [sys.executable, "-m", "data_prep.s3", "upload", str(folder), uri, "--path-style", "--part-mib", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ)
    for line in proc.stdout:
        if "part 2/6 sent" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    client = make_client(SETTINGS)
    [pending] = client.list_multipart_uploads(Bucket=BUCKET, Prefix="in-file/")["Uploads"]
    on_server = {
        p["PartNumber"]
        for p in client.list_parts(Bucket=BUCKET, Key=pending["Key"], UploadId=pending["UploadId"])["Parts"]
    }
    assert {1, 2} <= on_server and len(on_server) < 6, "killed inside the file"

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    sent = {int(m) for m in re.findall(r"part (\d)/6 sent", done.stdout)}
    assert f"resuming, {len(on_server)} of 6 parts already on the server" in done.stdout
    assert sent == set(range(1, 7)) - on_server, "the completed parts are not sent again"
    assert not client.list_multipart_uploads(Bucket=BUCKET, Prefix="in-file/").get("Uploads")
    cached, _ = download_prefix(uri, tmp_path / "cache", SETTINGS)
    assert sha256_file(cached / "long_mix.wav") == sha256_file(folder / "long_mix.wav")


def test_a_stopped_server_leaves_no_sockets_in_tmp(tmp_path):
    with LocalS3(tmp_path / "seaweedfs", "stop-test-access", "stop-test-secret-0123") as server:
        while_running = local_sockets(server.ports)
    assert while_running, "weed makes its local sockets in /tmp (this test would prove nothing otherwise)"
    assert local_sockets(server.ports) == [], "and they are gone once it stopped"


def test_a_port_taken_before_the_server_binds_it_is_traded_for_a_fresh_one(tmp_path):
    """Ports are chosen free, then bound by weed a moment later: another process may take one meanwhile."""
    server = LocalS3(tmp_path / "seaweedfs", "port-test-access", "port-test-secret-0123")
    first_ports = dict(server.ports)
    with socket.create_server(("127.0.0.1", first_ports["s3.port"])):  # the other process
        with server:
            assert server.ports["s3.port"] != first_ports["s3.port"]
            assert server.client().list_buckets()["Buckets"] == []
    assert f"port {first_ports['s3.port']} for S3".encode() in server.log_path.read_bytes(), "the first start met it"
    assert local_sockets(first_ports) == [] and local_sockets(server.ports) == []


def test_the_server_starts_without_warnings(s3_server):
    """Every part of weed mini reaches the others: no warning up to its banner (its admin worker once dialled a port
    nobody listened on while the admin started, and said so every few seconds after)."""
    banner, log = "All enabled components are running", s3_server.log_path
    wait_for(lambda: banner in log.read_text(), 30, "weed's banner")
    start = log.read_text().split(banner)[0]  # later lines answer other tests' broken uploads, on purpose
    assert [line for line in start.splitlines() if re.match(r"[WEF]\d{4} ", line)] == []
