"""The stream's encode alone: the exact ffmpeg command stream.py runs, fed in real time, for each variant.

    python bench/stream_encode.py [--seconds 20] [--audio TRACK.wav] [--variants preset=superfast "fps=15" ...]
                                  [--relay]

A variant is encoder.* settings (wavenet/stream/encoder.py: preset, tune, fps, waves_fps, video_kbps, ...);
the default compares today's encode with cheaper ones YouTube's ingest still takes. --relay adds the site and an
ingest at once: the default encode into HLS while the relay (wavenet/stream/relay.py) copies it into a local
nginx-rtmp, with the relay's CPU on a row of its own.

Prints, per preset, the wall time for --seconds of audio (1.00x = holds real time), the CPU it took in cores
(of this machine's), and the headroom left on the machine. Input: --audio (a track the model rendered, e.g. from
runs/stream/backlog/: its busy waveform costs the encoder more than the demo's music does), else a demo track.
"""

import argparse
import os
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from records import write_record

from data_prep.demo_corpus import SAMPLE_RATE, make_corpus
from wavenet.audio import read_wav
from wavenet.stream.encoder import EncoderSettings, HlsOutput, ffmpeg_args
from wavenet.stream.picture import draw_default_background, write_now_playing
from wavenet.stream.relay import Relay
from wavenet.stream.rtmp_server import LocalRtmp
from wavenet.stream.sink import Target
from wavenet.stream.supervisor import SupervisorSettings

DEFAULT_VARIANTS = [
    "preset=superfast",  # stream.py's default: the fastest preset that keeps High profile (CABAC, B-frames)
    "preset=veryfast",
    "preset=ultrafast",  # Constrained Baseline: no CABAC, no B-frames (below what YouTube recommends)
    "preset=superfast,waves_fps=10",
    "preset=superfast,fps=15",
]


def settings_of(variant: str) -> EncoderSettings:
    """preset=veryfast,waves_fps=10 -> EncoderSettings, each value typed like the field's default."""
    defaults, values = EncoderSettings(), {}
    for pair in variant.split(","):
        key, value = pair.split("=", 1)
        kind = type(getattr(defaults, key))
        values[key] = value if kind in (str, type(None)) else kind(value)
    return EncoderSettings(**{**asdict(defaults), **values})


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def encode(cmd: list[str], pcm: bytes) -> tuple[float, float]:
    """Run one encode fed `pcm`: its wall seconds and the CPU cores it used."""
    cpu0, start = children_cpu(), time.perf_counter()
    subprocess.run(cmd, input=pcm, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, (children_cpu() - cpu0) / wall


def encode_with_relay(pcm: bytes, background: Path, now_playing: Path, tmp: Path) -> list[tuple[str, float, float]]:
    """The default encode into HLS while the relay copies it into a local nginx-rtmp: (row, wall s, CPU cores) for
    the encoder and for the relay, which runs on until it has copied the last segments too."""
    settings, hls = EncoderSettings(), HlsOutput(tmp / "hls")
    hls.folder.mkdir()
    stop = threading.Event()
    with LocalRtmp(tmp / "nginx") as ingest:
        target = Target(ingest.url("live", "bench"), "the local ingest")
        relay = Relay(hls.playlist, target, SupervisorSettings(), settings.rw_timeout_s, stop)
        relay.start()
        started = time.perf_counter()
        wall, cores = encode(ffmpeg_args(None, SAMPLE_RATE, background, now_playing, settings, hls), pcm)
        cpu = children_cpu()
        stop.wait(3 * hls.segment_seconds + 2)  # the relay reads from three segments behind, in real time
        stop.set()
        relay.join()
        relay_wall = time.perf_counter() - started
        relay_cores = (children_cpu() - cpu) / relay_wall
    if relay.reconnects:
        raise SystemExit(f"the relay lost the local ingest {relay.reconnects} times: no figure for it")
    return [
        (f"{settings.preset} into HLS (the site)", wall, cores),
        ("relay: HLS copied to RTMP (8 s longer)", relay_wall, relay_cores),
    ]


def show(variant: str, wall: float, used: float, seconds: float, cores: int) -> dict:
    """Print one row of the table; the row for the JSON record."""
    print(f"{variant:<40} {wall:>7.1f} {seconds / wall:>6.2f}x {used:>10.2f} {1 - used / cores:>8.0%}", flush=True)
    return {"variant": variant, "wall_s": round(wall, 2), "cpu_cores": round(used, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--audio", default=None, help="a mono WAV at 16 kHz to encode (default: a demo track)")
    parser.add_argument("--relay", action="store_true", help="also the site and an ingest at once: HLS + the relay")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.audio is None:
            make_corpus(tmp / "corpus", tracks=1, seed=3, log=lambda *_: None)
        audio, rate = read_wav(args.audio or tmp / "corpus" / "demo_003_000.wav")
        if rate != SAMPLE_RATE:
            raise SystemExit(f"--audio {args.audio}: {rate} Hz, the stream's input here is {SAMPLE_RATE} Hz")
        audio = np.resize(audio, int(args.seconds * SAMPLE_RATE))
        pcm = (audio * 32767).astype("<i2").tobytes()
        background = draw_default_background(tmp / "background.png")
        now_playing = tmp / "now_playing.txt"
        write_now_playing(now_playing, "lofi-wavenet radio  |  track 1\nbenchmark")
        cores = os.cpu_count() or 1
        print(f"encode of {args.seconds:g} s: 1280x720 H.264 CBR 1500k + AAC 128k, -re paced, {cores} cores")
        print(f"{'variant':<40} {'wall s':>7} {'speed':>7} {'CPU cores':>10} {'headroom':>9}")
        print("-" * 77)
        rows = []
        for variant in args.variants:
            cmd = ffmpeg_args(str(tmp / "out.flv"), SAMPLE_RATE, background, now_playing, settings_of(variant))
            rows.append(show(variant, *encode(cmd, pcm), args.seconds, cores))
        if args.relay:
            rows += [show(*row, args.seconds, cores) for row in encode_with_relay(pcm, background, now_playing, tmp)]
    if args.json:
        audio = args.audio or "demo track 3"
        write_record(args.json, f"cpu, {cores} cores", seconds_of_audio=args.seconds, audio=audio, rows=rows)


if __name__ == "__main__":
    main()
