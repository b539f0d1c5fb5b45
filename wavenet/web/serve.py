"""The site's process: python -m wavenet.web.serve SITE_JSON (stream.py writes SITE_JSON and starts it).

Its own process, at a lower CPU priority, so that listeners and uploads never hold up the stream's renderer or
its encoder; it reads what the stream writes (status.json, the backlog, the HLS files) and renders continuations
with its own copy of the model.
"""

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import torch
import uvicorn

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.web.carry import CarryQueue
from wavenet.web.settings import WebSettings
from wavenet.web.site import SitePaths, make_app

log = logging.getLogger("site")


def main(site_json: str) -> None:
    spec = json.loads(Path(site_json).read_text())
    settings = WebSettings(**spec["settings"])
    if settings.nice:
        os.nice(settings.nice)
    torch.set_num_threads(1)
    uploads = Path(spec["uploads"])  # the stream's folder for us; what a site before us left goes now
    empty(uploads)
    try:
        ckpt = load_checkpoint(spec["checkpoint"], torch.device(spec["device"]))
        model = model_from_checkpoint(ckpt, torch.device(spec["device"]))
        carry = CarryQueue(model, spec["backend"], uploads, settings.queue_size, settings.keep_results_minutes * 60)
        workdir = Path(spec["workdir"])
        paths = SitePaths(
            status=workdir / "status.json",
            hls=Path(spec["hls"]),
            backlog=workdir / "backlog",
            background=Path(spec["background"]),
            thumbs=workdir / "site" / "thumbs",
            uploads=uploads,
        )
        app = make_app(paths, settings, carry, model.cfg.sample_rate)
        log.info(f"the station's site is at http://{settings.host}:{settings.port}/")
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
        carry.close()
    finally:
        empty(uploads)


def empty(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][site][%(levelname)s] - %(message)s")
    main(sys.argv[1])
