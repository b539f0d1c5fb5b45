"""The supervisor feeding a real ffmpeg: what a new encoder takes from the backlog at its start."""

import threading

import numpy as np

from wavenet.model import WaveNet, WaveNetConfig
from wavenet.stream.backlog import Backlog
from wavenet.stream.encoder import EncoderSettings, ffmpeg_args
from wavenet.stream.picture import draw_default_background, write_now_playing
from wavenet.stream.playout import Playout
from wavenet.stream.render import TrackRenderer
from wavenet.stream.sink import Target
from wavenet.stream.supervisor import Supervisor, SupervisorSettings

RATE = 16000


def test_a_new_encoder_takes_real_time_and_a_lead_not_the_seconds_it_would_swallow_at_once(tmp_path):
    # A cold start goes live on a few seconds of short tracks while the next batch renders. Written to as fast as
    # it reads, a starting ffmpeg swallows 3.6-4.9 s within half a second (measured on 2 cores), which would send
    # the playout past this 3 s track into the fallback before anything new could be rendered.
    backlog = Backlog(tmp_path / "backlog", RATE)
    backlog.add(0, (0.1 * np.sin(np.arange(3 * RATE) * 0.05)).astype(np.float32))
    playout = Playout(backlog, crossfade_seconds=0.5)
    stop = threading.Event()
    # A real renderer, never started: nothing new reaches the backlog while the encoder starts.
    model = WaveNet(WaveNetConfig(stacks=1, layers_per_stack=2))
    renderer = TrackRenderer(
        model, backlog, batch=1, track_seconds=3.0, temperature=1.0, seed=0, max_backlog_minutes=1.0, stop=stop
    )
    now_playing = tmp_path / "now_playing.txt"
    write_now_playing(now_playing, "test")
    recording = tmp_path / "preview.flv"
    settings = SupervisorSettings()
    args = ffmpeg_args(
        str(recording),
        RATE,
        draw_default_background(tmp_path / "background.png"),
        now_playing,
        EncoderSettings(preset="ultrafast"),
    )
    supervisor = Supervisor(
        Target(str(recording), str(recording)),
        args,
        playout,
        backlog,
        renderer,
        now_playing,
        tmp_path / "status.json",
        "test",
        settings,
        stop,
        duration_s=1.0,
    )
    supervisor.run()
    assert supervisor.sent_seconds <= 1.0 + settings.lead_seconds + settings.chunk_seconds + 1e-9
    assert playout.fallback_seconds == 0, "the first track lasted until the encoder was fed in real time"
    assert recording.stat().st_size > 0
