"""The stream's side of the site: check the address early, start the site's process, restart it if it dies, and
end it with the stream."""

import errno
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from wavenet.errors import UserError
from wavenet.files import write_text_atomic
from wavenet.processes import terminate
from wavenet.web.settings import WebSettings

log = logging.getLogger(__name__)


def check_address(settings: WebSettings) -> None:
    """Fail in a second, before the model loads, when web.host:web.port cannot be served."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((settings.host, settings.port))
    except OSError as err:
        why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be served ({err.strerror})"
        raise UserError(
            f"web.host={settings.host} web.port={settings.port} {why}: choose another with web.port=... (or web.host=...)."
        ) from err


class SiteProcess(threading.Thread):
    """Runs `python -m wavenet.web.serve` and keeps it running until `stop` is set."""

    def __init__(self, settings: WebSettings, spec: dict, spec_path: Path, stop: threading.Event):
        super().__init__(name="site", daemon=True)
        self.settings, self.stop = settings, stop
        # Visitors' uploads and results, under generated names: ours, so that what a killed site left is not kept
        self.uploads = Path(tempfile.mkdtemp(prefix="lofi-wavenet-site-"))
        spec = {**spec, "uploads": str(self.uploads), "settings": asdict(settings)}
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        self.spec_path = write_text_atomic(spec_path, json.dumps(spec, indent=2))
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}/"

    def _launch(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "wavenet.web.serve", str(self.spec_path)])

    def start_and_wait(self, timeout: float = 120.0) -> None:
        """Start the site and return once it answers; a UserError if its process ends first."""
        self._launch()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                self.close()
                raise UserError(f"the station's site did not start (exit {self.proc.returncode}): see its lines above.")
            if time.monotonic() > deadline:
                self.close()
                raise UserError(f"the station's site did not answer at {self.url} within {timeout:.0f} s.")
            self.stop.wait(0.2)  # polling a port another process opens
        log.info(f"the station's site: {self.url}")
        self.start()

    def _answers(self) -> bool:
        try:
            socket.create_connection((self.settings.host, self.settings.port), timeout=1).close()
            return True
        except OSError:
            return False

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.wait(1.0):
            if self.proc.poll() is None:
                continue
            self.restarts += 1
            log.warning(f"the station's site ended (exit {self.proc.returncode}); restarting it in {backoff:.0f} s")
            if self.stop.wait(backoff):
                break
            backoff = min(30.0, backoff * 2)
            self._launch()
        self.close()

    def close(self) -> None:
        terminate(self.proc)
        shutil.rmtree(self.uploads, ignore_errors=True)
