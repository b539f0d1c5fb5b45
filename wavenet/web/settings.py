"""What the site serves and accepts: the `web.*` block of conf/stream.yaml."""

from dataclasses import dataclass


@dataclass
class WebSettings:
    enabled: bool = False  # sink=web turns it on; web.enabled=true adds the site beside any other sink
    host: str = "127.0.0.1"  # loopback: put a reverse proxy in front for the public (README)
    port: int = 8080
    segment_seconds: float = 2.0  # HLS segment length: a multiple of encoder.keyframe_seconds
    playlist_segments: int = 6  # segments listed in the live playlist
    history_tracks: int = 10  # played tracks shown (with spectrograms and downloads)
    upload_max_mb: float = 10.0  # "carry it on": the largest clip a visitor may upload
    upload_max_seconds: float = 10.0  # ... and the longest
    continue_max_seconds: float = 10.0  # the longest continuation a visitor may ask for
    continue_default_seconds: float = 4.0
    temperature_min: float = 0.5
    temperature_max: float = 1.5
    queue_size: int = 4  # continuations waiting; beyond it a visitor is told the station is busy
    keep_results_minutes: float = 30.0  # finished continuations stay downloadable this long
    nice: int = 10  # the site process's CPU priority below the stream's (0 = the same)
