"""The ffmpeg command (built with ffmpeg-python): raw PCM on stdin + a picture -> what YouTube Live ingests.

H.264 1280x720 at 30 fps, a keyframe every 2 s, constant bitrate; AAC 128 kbps 44.1 kHz stereo; FLV over RTMP(S),
or the same into a file for a local preview; or HLS for the station's site, which the relay (relay.py) copies to
an ingest when there is one, so that one encode feeds both.
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
    preset: str = "superfast"  # x264 speed: the fastest that keeps High profile (CABAC, B-frames), as YouTube asks
    tune: str | None = None  # x264 tune, e.g. stillimage (the picture barely moves); null: none
    waves_fps: int | None = None  # the waveform drawn this often, each drawing repeated up to fps; null: fps
    rw_timeout_s: float = 10.0  # a hung ingest ends ffmpeg after this long without progress


@dataclass
class HlsOutput:
    folder: Path  # live.m3u8 and its segments
    segment_seconds: float = 2.0
    playlist_segments: int = 6

    @property
    def playlist(self) -> Path:
        return self.folder / "live.m3u8"

    def muxer_options(self) -> dict[str, str]:
        """Short segments written under temporary names; old ones deleted; a restart appends to the playlist."""
        return {
            "hls_time": f"{self.segment_seconds:g}",
            "hls_list_size": str(self.playlist_segments),
            "hls_flags": "delete_segments+temp_file+omit_endlist+append_list+program_date_time",
            "hls_segment_filename": str(self.folder / "segment_%06d.ts"),
        }


def ffmpeg_args(
    target: str | None,
    sample_rate: int,
    background: Path,
    now_playing: Path,
    settings: EncoderSettings,
    hls: HlsOutput | None = None,
) -> list[str]:
    """The argument list for ffmpeg; stdin takes mono s16le PCM at `sample_rate`, paced in real time.

    target: the FLV destination (rtmp(s):// URL or a file); hls: write HLS instead. Exactly one of the two.
    """
    s = settings
    if (target is None) == (hls is None):
        raise ValueError("ffmpeg writes one output: a target or HLS")
    gop = int(s.fps * s.keyframe_seconds)
    # The picture is decoded and converted once, then repeated: decoding the PNG for every frame cost a third of
    # the encode (bench/stream_encode.py).
    picture = (
        ffmpeg.input(str(background))
        .video.filter("scale", 1280, 720)
        .filter("format", "yuv420p")
        .filter("loop", loop=-1, size=1, start=0)
        .filter("fps", s.fps)
    )
    audio = ffmpeg.input("pipe:0", format="s16le", ar=sample_rate, ch_layout="mono", re=None, thread_queue_size=8).audio
    audio = audio.filter("aresample", 44100).filter("aformat", channel_layouts="stereo")
    split = audio.filter_multi_output("asplit")
    waves = split[1].filter("showwaves", s="1280x240", mode="cline", rate=s.waves_fps or s.fps, colors="0xffe0c0")
    waves = waves.filter("fps", s.fps)
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
    if hls is not None:
        destination, muxer = str(hls.playlist), {"format": "hls", **hls.muxer_options()}
    else:
        destination, muxer = target, {"format": "flv", **flv_options(target, s.rw_timeout_s)}
    out = ffmpeg.output(
        video,
        split[0],
        destination,
        vcodec="libx264",
        preset=s.preset,
        **({"tune": s.tune} if s.tune else {}),
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
            **muxer,
        },
    )
    # -y: a preview recording replaces the last one (ffmpeg would otherwise refuse, and the supervisor retry forever)
    args = out.overwrite_output().compile()  # ["ffmpeg", ...inputs, filters, output options..., destination, "-y"]
    return [args[0], "-hide_banner", "-loglevel", "warning", "-nostats", *args[1:]]


def flv_options(target: str, rw_timeout_s: float) -> dict[str, str]:
    """FLV muxer options; over the network, a hung ingest ends ffmpeg after rw_timeout_s without progress."""
    options = {"flvflags": "no_duration_filesize"}
    if target.startswith(("rtmp://", "rtmps://")):
        options["rw_timeout"] = str(int(rw_timeout_s * 1_000_000))
    return options
