"""Where the stream goes: YouTube Live (key from YOUTUBE_STREAM_KEY), any rtmp:// or rtmps:// URL, or a file.

The target URL may hold a stream key: it is only ever shown redacted, and checked before the model is loaded.
"""

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wavenet.errors import UserError
from wavenet.secrets import secret_values

log = logging.getLogger(__name__)


@dataclass
class SinkConfig:
    kind: str = "file"  # youtube, rtmp, file, or web (the station's own site alone: conf/sink/web.yaml)
    url: str | None = None  # rtmp: rtmp(s)://host[:port]/app[/stream]; youtube: the ingest base (default YouTube's)
    key_env: str | None = "YOUTUBE_STREAM_KEY"  # the environment variable that holds the stream key
    path: str = "runs/stream/preview.flv"  # file: the recording


YOUTUBE_INGEST = "rtmp://a.rtmp.youtube.com/live2"


@dataclass
class Target:
    url: str  # what ffmpeg writes to (may contain a secret)
    shown: str  # what logs and the status file show

    @property
    def is_network(self) -> bool:
        return self.url.startswith(("rtmp://", "rtmps://"))


def resolve_target(sink: SinkConfig) -> Target:
    """The sink as a URL; a clear error for a missing key or a malformed URL."""
    if sink.kind == "file":
        Path(sink.path).parent.mkdir(parents=True, exist_ok=True)
        return Target(str(sink.path), str(sink.path))
    if sink.kind == "youtube":
        key = os.environ.get(sink.key_env, "").strip()
        if not key:
            raise UserError(
                f"sink=youtube needs the stream key in the environment: export {sink.key_env}=xxxx-xxxx-xxxx-xxxx-xxxx (YouTube Studio > Go live > Stream key)."
            )
        base = (sink.url or YOUTUBE_INGEST).rstrip("/")
        return Target(f"{base}/{key}", f"{base}/<{sink.key_env}>")
    if sink.kind == "rtmp":
        if not sink.url or not sink.url.startswith(("rtmp://", "rtmps://")):
            raise UserError(f"sink=rtmp needs sink.url=rtmp://host[:port]/app (or rtmps://); got {sink.url!r}.")
        key = os.environ.get(sink.key_env, "").strip() if sink.key_env else ""
        url = f"{sink.url.rstrip('/')}/{key}" if key else sink.url  # a key in the environment stays out of configs
        parts = urlsplit(sink.url)
        app = parts.path.strip("/").split("/")[0]
        return Target(
            url, f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/{app}/<redacted>"
        )
    raise UserError(f"sink.kind={sink.kind!r}: use youtube, rtmp, file or web.")


def check_reachable(target: Target, timeout: float = 5.0) -> None:
    """Open a TCP connection to the ingest before anything heavy starts."""
    if not target.is_network:
        return
    parts = urlsplit(target.url)
    port = parts.port or (443 if parts.scheme == "rtmps" else 1935)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"cannot reach the ingest {target.shown} ({parts.hostname}:{port}: {err}). Check the URL and your network."
        ) from err


def log_ffmpeg_output(stream, target: Target, stopping: threading.Event | None = None) -> None:
    """ffmpeg's stderr as warnings in our log, with the target's URL and every secret redacted; once `stopping` is
    set, as debug lines (what ffmpeg says as we end it is no news)."""
    secrets = [target.url, *secret_values()]
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        for secret in secrets:
            line = line.replace(secret, target.shown if secret == target.url else "<redacted>")
        if line and "Thread message queue blocking" not in line:  # that one is our real-time backpressure
            log.log(logging.DEBUG if stopping and stopping.is_set() else logging.WARNING, f"ffmpeg: {line}")
