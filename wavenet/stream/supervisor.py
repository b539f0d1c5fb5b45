"""The supervisor: feeds the encoder in real time, restarts it with backoff when the ingest drops or hangs, keeps the
playback position, reports status (the relay's too, when one copies the site's HLS to an ingest), and ends cleanly
on SIGTERM."""

import json
import logging
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavenet.files import write_text_atomic
from wavenet.stream.backlog import Backlog
from wavenet.stream.picture import write_now_playing
from wavenet.stream.playout import Playout
from wavenet.stream.sink import Target, log_ffmpeg_output

log = logging.getLogger(__name__)


@dataclass
class SupervisorSettings:
    chunk_seconds: float = 0.1  # PCM written per write; ffmpeg (-re) takes it in real time
    lead_seconds: float = 1.0  # written ahead of real time at most: a new ffmpeg would take 4-5 s at once
    status_interval_s: float = 10.0  # a status line in the log this often
    backoff_start_s: float = 0.5
    backoff_max_s: float = 5.0
    stable_after_s: float = 30.0  # a connection that lasted this long resets the backoff


class Backoff:
    """Waits between reconnects, doubling from backoff_start_s to backoff_max_s; a connection that lasted
    stable_after_s starts them over."""

    def __init__(self, settings: SupervisorSettings):
        self.s = settings
        self.wait_s = settings.backoff_start_s

    def next_wait(self, connected_for_s: float) -> float:
        if connected_for_s >= self.s.stable_after_s:
            self.wait_s = self.s.backoff_start_s
        wait, self.wait_s = self.wait_s, min(self.s.backoff_max_s, self.wait_s * 2)
        return wait


class Supervisor:
    def __init__(
        self,
        target: Target,
        ffmpeg_args: list[str],
        playout: Playout,
        backlog: Backlog,
        renderer,
        now_playing: Path,
        status_file: Path,
        describe: str,
        settings: SupervisorSettings,
        stop: threading.Event,
        duration_s: float | None = None,
        meter=None,
        station: dict | None = None,
        relay=None,
    ):
        self.target, self.args = target, ffmpeg_args
        self.playout, self.backlog, self.renderer = playout, backlog, renderer
        self.now_playing, self.status_file, self.describe = now_playing, status_file, describe
        self.s = settings
        self.stop = stop
        self.duration_s = duration_s  # stop after this long (a preview); None runs until SIGTERM
        self.meter = meter or renderer.meter  # whose real-time factor the status reports (the live one in direct mode)
        self.reconnects = 0
        self.sent_seconds = 0.0
        self.state = "starting"
        self.started = time.monotonic()
        self.station = station or {}  # what the status always says about the station: model, step, seed, temperature
        self.history: deque[dict] = deque(maxlen=20)  # the tracks played, newest first, with when they began
        self.relay = relay  # the site's HLS copied to an ingest (relay.Relay), or None

    def _note_track(self, track: int | None, replay: bool) -> None:
        if track is not None and (not self.history or self.history[0]["track"] != track):
            self.history.appendleft({"track": track, "started": round(time.time(), 2), "replay": replay})

    # -- status -----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        seg = self.playout.current if self.playout.segments else None
        ingest = self.relay or self  # with a relay, the encoder feeds the site and the relay the ingest
        return {
            "state": self.state,
            "sink": ingest.target.shown,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "audio_sent_s": round(self.sent_seconds, 1),
            "real_time_factor": round(self.meter.real_time_factor, 3),
            "render_audio_s": round(self.meter.audio_s, 2),  # the two that make the real-time factor
            "render_busy_s": round(self.meter.busy_s, 2),
            "backlog_minutes": round(self.backlog.seconds_after(self.playout.next_track) / 60, 2),
            "reconnects": ingest.reconnects,
            **({"ingest": self.relay.state, "encoder_restarts": self.reconnects} if self.relay else {}),
            "fallback_seconds": round(self.playout.fallback_seconds, 1),
            "fallback_now": bool(seg and seg.fallback),
            "track": seg.track if seg else None,
            "tracks_rendered": self.renderer.rendered,
            "tracks_dropped": self.renderer.dropped,  # by the quality gate (silence, clipping, hiss, least likely)
            **self.station,
            "history": list(self.history),
            "time": round(time.time(), 2),  # when this status was written (the history's clock)
        }

    def report(self, line: bool) -> None:
        seg = self.playout.current if self.playout.segments else None
        if seg is not None:
            self._note_track(seg.track, seg.fallback)
        status = self.status()
        write_text_atomic(self.status_file, json.dumps(status, indent=2) + "\n")
        track = "live" if status["track"] == -1 else f"track {status['track']}"
        uptime = time.strftime("%H:%M:%S", time.gmtime(status["uptime_s"]))
        replay = " (replay)" if status["fallback_now"] else ""
        ingest = f" | ingest {status['ingest']}" if self.relay else ""
        write_now_playing(self.now_playing, f"lofi-wavenet radio  |  {track}{replay}\n{self.describe}  |  up {uptime}")
        if line and status["fallback_now"]:
            log.warning(
                f"renderer behind: replaying track {status['track']} (fallback so far {status['fallback_seconds']:.0f} s)"
            )
        if line:
            log.info(
                f"{status['state']} {uptime} | {track} | backlog {status['backlog_minutes']:.1f} min | render "
                f"{status['real_time_factor']:.2f}x real time | reconnects {status['reconnects']}{ingest} | fallback {status['fallback_seconds']:.0f} s | "
                f"dropped {status['tracks_dropped']} of {status['tracks_rendered']} tracks"
            )

    # -- running ffmpeg ---------------------------------------------------------------------------------------
    def _feed(self, proc: subprocess.Popen, connected_at: float) -> None:
        """Write PCM until ffmpeg stops taking it, the duration is up, or we are told to stop."""
        chunk = int(self.s.chunk_seconds * self.backlog.sample_rate)
        next_report = next_line = 0.0
        fed = 0.0  # seconds written to this ffmpeg
        while not self.stop.is_set():
            if self.duration_s and time.monotonic() - self.started >= self.duration_s:
                self.stop.set()
                break
            # ffmpeg's pipe and input queue take seconds of audio at once when it starts: audio the first short
            # tracks of a cold start cannot spare. Feed it real time plus a lead instead (pacing by design).
            ahead = fed - (time.monotonic() - connected_at) - self.s.lead_seconds
            if ahead > 0 and self.stop.wait(ahead):
                break
            pcm = (np.clip(self.playout.read(chunk), -1, 1) * 32767).astype("<i2").tobytes()
            proc.stdin.write(pcm)  # blocks while ffmpeg (-re) is ahead of real time
            fed += self.s.chunk_seconds
            self.sent_seconds += self.s.chunk_seconds
            self.renderer.playing_track = self.playout.next_track - 1
            now = time.monotonic()
            if now >= next_report:
                self.playout.save_position()
                self.report(line=now >= next_line)
                next_report = now + 1.0
                next_line = next_line if now < next_line else now + self.s.status_interval_s

    def run(self) -> None:
        backoff = Backoff(self.s)
        while not self.stop.is_set():
            self.state = "live"
            log.info(f"streaming to {self.target.shown}")
            proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            reader = threading.Thread(target=log_ffmpeg_output, args=(proc.stderr, self.target), daemon=True)
            reader.start()
            connected_at = time.monotonic()
            try:
                self._feed(proc, connected_at)
            except (BrokenPipeError, ConnectionResetError, OSError) as err:
                log.warning(
                    f"{'the encoder ended' if self.relay else 'ingest dropped'} ({err.__class__.__name__}); playback "
                    f"holds at track {self.playout.current.track}"
                )
            finally:
                self._close(proc)
                reader.join(timeout=5)
            if self.stop.is_set():
                break
            self.state = "reconnecting"
            self.reconnects += 1
            wait = backoff.next_wait(time.monotonic() - connected_at)
            self.report(line=True)
            log.warning(f"reconnecting to {self.target.shown} in {wait:.1f} s (reconnect {self.reconnects})")
            self.stop.wait(wait)  # the backoff itself: wait, unless told to stop
        self.state = "stopped"
        self.playout.save_position()
        self.report(line=True)

    def _close(self, proc: subprocess.Popen) -> None:
        """Let ffmpeg finish what it has (end of input), or end it if it does not."""
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
