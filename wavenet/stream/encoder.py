"""The ffmpeg command (built with ffmpeg-python): raw PCM on stdin + a picture -> what YouTube Live ingests.

H.264 1280x720 at 30 fps, a keyframe every 2 s, constant bitrate; AAC 128 kbps 44.1 kHz stereo; FLV over RTMP(S),
or the same into a file for a local preview.
"""

from dataclasses import dataclass
from pathlib import Path

import ffmpeg

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass
class EncoderSettings:
    video_kbps: int = 1500
    audio_kbps: int = 128
    fps: int = 30
    keyframe_seconds: float = 2.0
    preset: str = "veryfast"  # x264 speed; the encode must hold real time on 2 cores
    rw_timeout_s: float = 10.0  # a hung ingest ends ffmpeg after this long without progress


def ffmpeg_args(
    target: str, sample_rate: int, background: Path, now_playing: Path, settings: EncoderSettings
) -> list[str]:
    """The argument list for ffmpeg; stdin takes mono s16le PCM at `sample_rate`, paced in real time."""
    s = settings
    gop = int(s.fps * s.keyframe_seconds)
    picture = ffmpeg.input(str(background), loop=1, framerate=s.fps).video.filter("scale", 1280, 720)
    audio = ffmpeg.input("pipe:0", format="s16le", ar=sample_rate, ac=1, re=None, thread_queue_size=8).audio
    audio = audio.filter("aresample", 44100).filter("aformat", channel_layouts="stereo")
    split = audio.filter_multi_output("asplit")
    waves = split[1].filter("showwaves", s="1280x240", mode="cline", rate=s.fps, colors="0xffe0c0").filter("fps", s.fps)
    video = (
        ffmpeg.overlay(picture, waves, x=0, y=440, shortest=1)
        .drawtext(
            textfile=str(now_playing),
            reload=1,
            fontfile=FONT,
            fontsize=26,
            line_spacing=10,
            fontcolor="white",
            x=40,
            y=40,
            box=1,
            boxcolor="black@0.45",
            boxborderw=12,
        )
        .filter("format", "yuv420p")
    )
    out = ffmpeg.output(
        video,
        split[0],
        target,
        format="flv",
        vcodec="libx264",
        preset=s.preset,
        r=s.fps,
        g=gop,
        keyint_min=gop,
        sc_threshold=0,
        **{
            "b:v": f"{s.video_kbps}k",
            "minrate": f"{s.video_kbps}k",
            "maxrate": f"{s.video_kbps}k",
            "bufsize": f"{2 * s.video_kbps}k",
            "x264-params": "nal-hrd=cbr",
            "c:a": "aac",
            "b:a": f"{s.audio_kbps}k",
            "ar": 44100,
            "ac": 2,
            "flvflags": "no_duration_filesize",
        },
    )
    args = out.compile()  # ["ffmpeg", ...inputs, filters, output options..., target]
    if target.startswith("rtmp"):
        args[-1:-1] = ["-rw_timeout", str(int(s.rw_timeout_s * 1_000_000))]
    return [args[0], "-hide_banner", "-loglevel", "warning", "-nostats", *args[1:]]
