"""The relay: with the site and an ingest at once, the encoder writes the site's HLS and this copies it to the ingest
(no second encode), so that an ingest that drops, hangs or is down for hours never stops what the site airs.

It reconnects with the supervisor's backoff; the copy runs a few segments behind the site.
"""

import logging
import subprocess
import threading
import time
from pathlib import Path

from wavenet.processes import terminate
from wavenet.stream.encoder import flv_options
from wavenet.stream.sink import Target, log_ffmpeg_output
from wavenet.stream.supervisor import Backoff, SupervisorSettings

log = logging.getLogger(__name__)


def relay_args(playlist: Path, target: str, rw_timeout_s: float) -> list[str]:
    """ffmpeg reading the live playlist in real time from a few segments back, copying it into FLV for `target`."""
    flv = [arg for key, value in flv_options(target, rw_timeout_s).items() for arg in (f"-{key}", value)]
    return [
        "ffmpeg",
        *("-hide_banner", "-loglevel", "warning", "-nostats"),
        *("-re", "-i", f"file:{playlist}"),  # file: so that a colon in the folder's name is not taken for a protocol
        *("-c", "copy", "-f", "flv", *flv, "-progress", "pipe:1", target),  # progress: what says it is live
    ]


class Relay(threading.Thread):
    """Runs the copy until `stop`, restarting it whenever it ends; `state` and `reconnects` go into the status."""

    def __init__(
        self, playlist: Path, target: Target, settings: SupervisorSettings, rw_timeout_s: float, stop: threading.Event
    ):
        super().__init__(name="relay", daemon=True)
        self.playlist, self.target, self.s, self.stop = playlist, target, settings, stop
        self.args = relay_args(playlist, target.url, rw_timeout_s)
        self.state = "starting"  # then connecting, live (media reached the ingest), reconnecting; stopped
        self.reconnects = 0
        self.created = time.time()

    def run(self) -> None:
        backoff = Backoff(self.s)
        while not self.stop.is_set():
            if not self._written_since_we_started():  # not this run's first segment yet (an old run's playlist stays)
                self.stop.wait(0.5)
                continue
            self.state = "connecting"
            log.info(f"relaying the site's stream to {self.target.shown}")
            started = time.monotonic()
            code = self._copy_until_it_ends()
            if self.stop.is_set():
                break
            self.state = "reconnecting"
            self.reconnects += 1
            wait = backoff.next_wait(time.monotonic() - started)
            log.warning(
                f"ingest dropped (ffmpeg exited with {code}); the site stays live. Reconnecting to "
                f"{self.target.shown} in {wait:.1f} s (reconnect {self.reconnects})"
            )
            self.stop.wait(wait)
        self.state = "stopped"

    def _written_since_we_started(self) -> bool:
        try:
            return self.playlist.stat().st_mtime >= self.created
        except FileNotFoundError:
            return False

    def _copy_until_it_ends(self) -> int:
        """One ffmpeg: its exit code, or 0 when we stopped it (it finishes the FLV on SIGTERM)."""
        proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reader = threading.Thread(target=log_ffmpeg_output, args=(proc.stderr, self.target, self.stop), daemon=True)
        reader.start()
        progress = threading.Thread(target=self._watch_progress, args=(proc.stdout,), daemon=True)
        progress.start()
        try:
            while not self.stop.is_set():
                try:
                    return proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
            _end(proc)
            return 0
        finally:
            reader.join(timeout=5)
            progress.join(timeout=5)  # its last lines are read before the state moves on

    def _watch_progress(self, stream) -> None:
        """ffmpeg's -progress lines: the copy is live once it has written media to the ingest."""
        for raw in stream:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit() and int(value) > 0 and not self.stop.is_set():
                self.state = "live"


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM, and a second one a second later: ffmpeg waiting on a playlist that has stopped growing (the encoder
    ended first) only heeds a second signal. Killed if even that does not end it."""
    proc.terminate()
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        terminate(proc, timeout=5.0)
