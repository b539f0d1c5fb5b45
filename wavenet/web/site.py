"""The site's HTTP side (FastAPI): the page, the live HLS files, the status JSON, played tracks with their
spectrograms, and carry it on (upload a clip, follow it in the queue, play and download the result)."""

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from wavenet.audio import read_wav, write_spectrogram_png
from wavenet.errors import UserError
from wavenet.synthesis import load_prime
from wavenet.web.carry import Busy, CarryQueue, Job
from wavenet.web.settings import WebSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HLS_FILE = re.compile(r"^(live\.m3u8|segment_\d{6}\.ts)$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
LISTENER_WINDOW_S = 30.0  # a page that polled the status this recently counts as a listener


@dataclass
class SitePaths:
    status: Path  # status.json, written by the stream's supervisor every second
    hls: Path  # live.m3u8 and its segments
    backlog: Path  # track_NNNNNN.wav
    background: Path  # the picture the video shows
    thumbs: Path  # spectrogram thumbnails, made on first request
    uploads: Path  # uploaded clips while they are decoded (a temporary folder)


class Listeners:
    """Pages that polled recently, by the random id each page makes for itself (no cookies, no addresses)."""

    def __init__(self, window_s: float = LISTENER_WINDOW_S, most: int = 10_000):
        self.seen: dict[str, float] = {}
        self.window_s, self.most = window_s, most
        self.lock = threading.Lock()  # requests are served from a thread pool

    def count(self, listener: str | None) -> int:
        now = time.monotonic()
        with self.lock:
            if listener and len(listener) <= 64 and len(self.seen) < self.most:
                self.seen[listener] = now
            self.seen = {k: t for k, t in self.seen.items() if now - t <= self.window_s}
            return len(self.seen)


def clean_name(name: str) -> str:
    """An uploaded file's name as it may be shown: its last path part, printable, at most 80 characters."""
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:80] or "your clip"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def make_app(paths: SitePaths, settings: WebSettings, carry: CarryQueue | None, sample_rate: int) -> FastAPI:
    """The site; `carry` None serves the station without uploads."""
    app = FastAPI(title="lofi-wavenet radio", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    listeners = Listeners()
    thumbs_lock = threading.Lock()
    limits = {
        "upload_max_mb": settings.upload_max_mb,
        "upload_max_seconds": settings.upload_max_seconds,
        "continue_max_seconds": settings.continue_max_seconds,
        "continue_default_seconds": settings.continue_default_seconds,
        "temperature_min": settings.temperature_min,
        "temperature_max": settings.temperature_max,
        "uploads": carry is not None,
    }

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/background.png")
    def background() -> FileResponse:
        return FileResponse(paths.background, headers={"Cache-Control": "max-age=3600"})

    @app.get("/hls/{name}")
    def hls(name: str) -> Response:
        try:  # read whole: ffmpeg renames a new playlist over the old one, and deletes old segments, at any moment
            body = (paths.hls / name).read_bytes() if HLS_FILE.match(name) else None
        except FileNotFoundError:
            body = None
        if body is None:
            return error(404, f"{name}: no such part of the live stream")
        if name.endswith(".m3u8"):
            return Response(body, media_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "no-cache"})
        return Response(body, media_type="video/mp2t", headers={"Cache-Control": "max-age=60"})

    @app.get("/api/status")
    def status(listener: str | None = None) -> dict:
        try:
            stream = json.loads(paths.status.read_text())
        except (OSError, ValueError):  # not written yet
            stream = {"state": "starting", "history": []}
        history = [
            {**h, "audio": f"/tracks/{h['track']}.wav", "spectrogram": f"/tracks/{h['track']}.png"}
            for h in stream.get("history", [])[: settings.history_tracks]
            if h["track"] >= 0 and (paths.backlog / f"track_{h['track']:06d}.wav").exists()
        ]
        return {
            **stream,
            "history": history,
            "hls_ready": (paths.hls / "live.m3u8").is_file(),
            "playlist": "/hls/live.m3u8",
            "segment_seconds": settings.segment_seconds,
            "listeners": listeners.count(listener),
            "limits": limits,
        }

    @app.get("/tracks/{index}.wav")
    def track_audio(index: int) -> Response:
        path = paths.backlog / f"track_{index:06d}.wav"
        if not path.is_file():
            return error(404, f"track {index} is no longer kept")
        return FileResponse(path, media_type="audio/wav", filename=f"lofi-wavenet-track-{index}.wav")

    @app.get("/tracks/{index}.png")
    async def track_spectrogram(index: int) -> Response:
        wav, png = paths.backlog / f"track_{index:06d}.wav", paths.thumbs / f"track_{index:06d}.png"
        if not await asyncio.to_thread(make_thumbnail, wav, png, thumbs_lock):
            return error(404, f"track {index} is no longer kept")
        return FileResponse(png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    @app.post("/api/carry")
    async def carry_on(request: Request, seconds: float, temperature: float = 1.0, name: str = "") -> Response:
        if carry is None:
            return error(503, "this station takes no uploads")
        if not 0 < seconds <= settings.continue_max_seconds:
            return error(
                400, f"seconds={seconds:g}: choose a length above 0 and at most {settings.continue_max_seconds:g} s"
            )
        if not settings.temperature_min <= temperature <= settings.temperature_max:
            return error(
                400,
                f"temperature={temperature:g}: choose one from {settings.temperature_min:g} to {settings.temperature_max:g}",
            )
        if carry.full:
            return error(503, f"the station is busy: {carry.size} clips are waiting. Try again in a minute.")
        shown = clean_name(name)
        limit = int(settings.upload_max_mb * 1024 * 1024)
        if int(request.headers.get("content-length") or 0) > limit:
            return error(413, f"{shown} is larger than {settings.upload_max_mb:g} MB: upload a shorter clip")
        upload = paths.uploads / f"{uuid.uuid4().hex}.upload"  # never the visitor's name
        try:
            received = await receive(request, upload, limit)
            if received > limit:
                return error(413, f"{shown} is larger than {settings.upload_max_mb:g} MB: upload a shorter clip")
            if received == 0:
                return error(400, f"{shown} is empty: choose a file with sound in it")
            max_s = settings.upload_max_seconds
            codes = await asyncio.to_thread(load_prime, upload, sample_rate, max_s + 0.5, shown)
        except ClientDisconnect:
            log.info("carry it on: a visitor left mid-upload; the partial file is deleted")
            return Response(status_code=400)
        except UserError as err:
            return error(400, str(err))
        finally:
            upload.unlink(missing_ok=True)
        if len(codes) > max_s * sample_rate + 0.05 * sample_rate:
            return error(400, f"{shown} is longer than {max_s:g} s: upload a shorter clip (or its first {max_s:g} s)")
        try:
            job = Job(codes, seconds, temperature, shown)
            position = carry.submit(job)
        except Busy as err:
            return error(503, str(err))
        return JSONResponse({"id": job.id, "position": position, "state": job.state}, status_code=202)

    @app.get("/api/carry/{job_id}")
    def carry_state(job_id: str) -> Response:
        job = carry.jobs.get(job_id) if carry and JOB_ID.match(job_id) else None
        if job is None:
            return error(404, "no such continuation (results are kept for a while, then deleted)")
        state = {k: getattr(job, k) for k in ("id", "state", "progress", "message", "seed", "name")}  # not the clip
        state.update(position=carry.position(job), temperature=job.temperature, seconds=job.seconds)
        if job.state == "done":
            prime_s = len(job.clip) / sample_rate
            state.update(audio=f"/carry/{job.id}.wav", seam_seconds=prime_s, total_seconds=prime_s + job.seconds)
        return JSONResponse(state)

    @app.get("/carry/{job_id}.wav")
    def carry_audio(job_id: str) -> Response:
        job = carry.jobs.get(job_id) if carry and JOB_ID.match(job_id) else None
        if job is None or job.state != "done":
            return error(404, "no such continuation (results are kept for a while, then deleted)")
        return FileResponse(carry.result_path(job), media_type="audio/wav", filename="lofi-wavenet-carry-on.wav")

    return app


async def receive(request: Request, path: Path, limit: int) -> int:
    """Write the request body to `path`, stopping once it passes `limit` bytes; the bytes received."""
    received = 0
    with open(path, "wb") as f:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                break
            f.write(chunk)
    return received


def make_thumbnail(wav: Path, png: Path, lock: threading.Lock) -> bool:
    """A track's spectrogram thumbnail, made once per rendering of the track (a new backlog renumbers from 0);
    False when the track is gone (pruned from the backlog)."""
    with lock:
        try:
            if png.stat().st_mtime >= wav.stat().st_mtime:
                return True
        except FileNotFoundError:
            pass
        try:
            audio, rate = read_wav(wav)
        except UserError:  # the track was pruned from the backlog meanwhile
            return False
        png.parent.mkdir(parents=True, exist_ok=True)
        write_spectrogram_png(png, audio, rate, size=(320, 80))
        return True
