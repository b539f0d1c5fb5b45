"""nginx with the RTMP module on loopback: a real ingest for local previews, the soak benchmark and the tests.

with LocalRtmp(folder) as ingest:      # random free port, 127.0.0.1 only
    ingest.url("live", "stream-key")   # rtmp://127.0.0.1:PORT/live/stream-key
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRtmp:
    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, app: str, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{stream}"

    def start(self, timeout: float = 20.0) -> "LocalRtmp":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists() or not Path(MODULE).exists():
            raise RuntimeError("nginx with the RTMP module is missing: apt-get install nginx libnginx-mod-rtmp")
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o777)  # nginx workers run as nobody
        conf = self.folder / "nginx.conf"
        conf.write_text(
            f"load_module {MODULE};\n"
            "daemon off;\nworker_processes 1;\n"
            f"pid {self.folder / 'nginx.pid'};\nerror_log {self.folder / 'error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            f"rtmp {{ server {{ listen 127.0.0.1:{self.port}; chunk_size 4096;\n"
            "  application live { live on; record off; }\n"
            "  application live2 { live on; record off; } } }\n"
        )
        self.process = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(self.folder)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:  # poll until the port accepts connections: nginx has no readiness signal for us
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}; see {self.folder / 'error.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"nginx did not listen on {self.port} within {timeout:.0f} s") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """Kill nginx hard (master and workers), as a crashed ingest would go."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "LocalRtmp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
