"""The livestream: python stream.py checkpoint=runs/demo/checkpoints/best.pt sink=youtube (see README.md)."""

import logging
import signal
import sys
import threading

import hydra
from omegaconf import DictConfig

from wavenet.config import register_configs
from wavenet.errors import UserError
from wavenet.stream.app import run_stream

log = logging.getLogger("stream")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="stream")
def main(cfg: DictConfig) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # finish the current write, close ffmpeg, save the position
    try:
        status = run_stream(cfg, stop)
    except UserError as err:
        log.error(str(err))
        sys.exit(2)
    status.pop("history", None)  # the tracks played are in status.json; the last line keeps to the figures
    log.info(f"stopped: {status}")


if __name__ == "__main__":
    main()
