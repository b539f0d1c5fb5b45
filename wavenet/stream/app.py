"""stream.py's work: check the sink (and the site's address), load the model, start rendering (and the site), wait
for the first track, go live."""

import logging
import queue
import threading
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.device import resolve_device
from wavenet.errors import UserError
from wavenet.generation import check_backend
from wavenet.storage import S3Settings, local_copy
from wavenet.stream.backlog import Backlog
from wavenet.stream.encoder import EncoderSettings, HlsOutput, ffmpeg_args
from wavenet.stream.gate import GateSettings
from wavenet.stream.picture import draw_default_background, write_now_playing
from wavenet.stream.playout import Playout
from wavenet.stream.relay import Relay
from wavenet.stream.render import LiveRenderer, TrackRenderer
from wavenet.stream.sink import SinkConfig, Target, check_reachable, resolve_target
from wavenet.stream.supervisor import Supervisor, SupervisorSettings
from wavenet.web.process import SiteProcess, check_address
from wavenet.web.settings import WebSettings

log = logging.getLogger(__name__)


def run_stream(cfg: DictConfig, stop: threading.Event) -> dict:
    """Run the stream until `stop` is set (SIGTERM) or cfg.duration_seconds is up; returns the final status."""
    sink = SinkConfig(**OmegaConf.to_container(cfg.sink, resolve=True))
    web = WebSettings(**OmegaConf.to_container(cfg.web))
    hls = None
    if web.enabled or sink.kind == "web":
        check_address(web)
        hls = HlsOutput(Path(cfg.workdir) / "hls", web.segment_seconds, web.playlist_segments)
        if web.segment_seconds % cfg.encoder.keyframe_seconds:
            raise UserError(
                f"web.segment_seconds={web.segment_seconds:g} must be a multiple of encoder.keyframe_seconds="
                f"{cfg.encoder.keyframe_seconds:g}: HLS segments start at keyframes."
            )
    target = _site_target(hls, web) if sink.kind == "web" else resolve_target(sink)
    check_reachable(target)  # before the model is loaded: a wrong URL fails in a second, not after a minute
    if cfg.mode not in ("parallel", "direct"):
        raise UserError(f"mode={cfg.mode!r}: use parallel (batches of tracks) or direct (one live stream).")
    if not 0 < cfg.min_track_seconds:
        raise UserError(f"min_track_seconds={cfg.min_track_seconds:g}: must be above 0 (0.75 is the default).")
    check_backend(cfg.generation.backend)
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.render_threads)
    s3 = S3Settings(**OmegaConf.to_container(cfg.s3))
    checkpoint = Path(local_copy(cfg.checkpoint, cfg.cache_dir, s3))
    ckpt = load_checkpoint(checkpoint, device)
    model = model_from_checkpoint(ckpt, device)
    backlog = Backlog(workdir / "backlog", model.cfg.sample_rate, cfg.keep_played)
    live = queue.Queue(maxsize=64) if cfg.mode == "direct" else None
    renderer = TrackRenderer(
        model,
        backlog,
        cfg.batch_size,
        cfg.track_seconds,
        cfg.temperature,
        cfg.seed,
        cfg.max_backlog_minutes,
        stop,
        cfg.render_rate_limit,
        cfg.generation.backend,
        GateSettings(**OmegaConf.to_container(cfg.gate)),
        cfg.crossfade_seconds,
        cfg.min_track_seconds,
    )
    renderer.start()
    site = None
    try:
        background = Path(cfg.background) if cfg.background else draw_default_background(workdir / "background.png")
        station = {
            "model": _model_name(cfg.checkpoint, ckpt),
            "step": ckpt["step"],
            "seed": cfg.seed,
            "temperature": cfg.temperature,
        }
        if hls is not None:
            site = _start_site(web, hls, workdir, background, checkpoint, device, cfg.generation.backend, stop)
        return _go_live(cfg, stop, target, model, station, backlog, renderer, live, workdir, background, hls)
    finally:
        stop.set()  # also when something failed: the render threads and the site end with us
        renderer.join(timeout=60)
        if site is not None:
            site.close()


def _start_site(web, hls, workdir, background, checkpoint, device, backend, stop) -> SiteProcess:
    """The site's process, serving the HLS folder, the backlog and status.json, with its own copy of the model."""
    hls.folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "workdir": str(workdir.resolve()),
        "hls": str(hls.folder.resolve()),
        "background": str(background.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        "device": str(device),
        "backend": backend,
    }
    site = SiteProcess(web, spec, workdir / "site" / "site.json", stop)
    site.start_and_wait()
    return site


def _go_live(cfg, stop, target, model, station, backlog, renderer, live, workdir, background, hls) -> dict:
    rate = model.cfg.sample_rate
    meter = renderer.meter
    if live is not None:  # direct mode: the track renderer still fills the backlog the fallback plays from
        live_renderer = LiveRenderer(
            model,
            rate,
            cfg.temperature,
            cfg.seed,
            live,
            stop,
            rate_limit=cfg.render_rate_limit,
            backend=cfg.generation.backend,
        )
        live_renderer.start()
        meter = live_renderer.meter
    if not backlog.indices():
        log.info(
            f"rendering the first {cfg.batch_size} tracks before going live (shortened to as little as "
            f"{min(cfg.min_track_seconds, cfg.track_seconds):g} s while the backlog is low, then {cfg.track_seconds:g} s)"
        )
    warned = 0
    while not backlog.indices() and not stop.is_set():
        if renderer.error:
            raise renderer.error
        if renderer.dropped > warned:
            warned = renderer.dropped
            log.warning(
                f"the quality gate has dropped all {renderer.dropped} tracks rendered so far (silence, clipping or "
                "hiss): is the checkpoint trained enough? Still rendering; gate.enabled=false airs them anyway."
            )
        stop.wait(0.5)  # waiting for the first track file; the renderer has no event for it
    if stop.is_set():
        return {"state": "stopped before going live", "backlog_tracks": len(backlog.indices())}

    now_playing = workdir / "now_playing.txt"
    write_now_playing(now_playing, "lofi-wavenet radio")
    encoder = EncoderSettings(**OmegaConf.to_container(cfg.encoder))
    settings = SupervisorSettings(**OmegaConf.to_container(cfg.supervisor))
    relay = None
    if hls is not None and cfg.sink.kind != "web":  # the site and an ingest: the encoder feeds the site, the relay
        relay = Relay(hls.playlist, target, settings, encoder.rw_timeout_s, stop)  # copies it to the ingest
        target = _site_target(hls, cfg.web)
    args = ffmpeg_args(None if hls else target.url, rate, background, now_playing, encoder, hls)
    playout = Playout(backlog, cfg.crossfade_seconds, live, cfg.jitter_seconds)
    describe = f"model {station['model']} step {station['step']}  |  temperature {cfg.temperature}"
    supervisor = Supervisor(
        target,
        args,
        playout,
        backlog,
        renderer,
        now_playing,
        workdir / "status.json",
        describe,
        settings,
        stop,
        cfg.duration_seconds,
        meter,
        station,
        relay,
    )
    if relay is not None:
        relay.start()
    try:
        supervisor.run()
    finally:
        stop.set()
        if relay is not None:
            relay.join(timeout=15)
            supervisor.report(line=False)  # the status file says the relay stopped too
    return supervisor.status()


def _site_target(hls: HlsOutput, web) -> Target:
    """The encoder's output when it feeds the site: the HLS playlist, shown as the site's address."""
    return Target(str(hls.playlist), f"http://{web.host}:{web.port}/")


def _model_name(checkpoint: str, ckpt: dict) -> str:
    """A released model's name (models/NAME.pt), else the run's (runs/NAME/checkpoints/best.pt), else the file's."""
    path = Path(checkpoint)
    if "release" in ckpt:
        return ckpt["release"]["name"]
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
