"""The stream's encode alone: the exact ffmpeg command stream.py runs, fed in real time, for each variant.

    python bench/stream_encode.py [--seconds 20] [--audio TRACK.wav] [--variants preset=superfast "fps=15" ...]

A variant is encoder.* settings (wavenet/stream/encoder.py: preset, tune, fps, waves_fps, video_kbps, ...);
the default compares today's encode with cheaper ones YouTube's ingest still takes.

Prints, per preset, the wall time for --seconds of audio (1.00x = holds real time), the CPU it took in cores
(of this machine's), and the headroom left on the machine. Input: --audio (a track the model rendered, e.g. from
runs/stream/backlog/: its busy waveform costs the encoder more than the demo's music does), else a demo track.
"""

import argparse
import os
import resource
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from records import write_record

from data_prep.demo_corpus import SAMPLE_RATE, make_corpus
from wavenet.audio import read_wav
from wavenet.stream.encoder import EncoderSettings, ffmpeg_args
from wavenet.stream.picture import draw_default_background, write_now_playing

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--audio", default=None, help="a mono WAV at 16 kHz to encode (default: a demo track)")
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
            out = tmp / "out.flv"
            cmd = ffmpeg_args(str(out), SAMPLE_RATE, background, now_playing, settings_of(variant))
            cpu0, start = children_cpu(), time.perf_counter()
            subprocess.run(cmd, input=pcm, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            used = (children_cpu() - cpu0) / wall
            print(f"{variant:<40} {wall:>7.1f} {args.seconds / wall:>6.2f}x {used:>10.2f} {1 - used / cores:>8.0%}")
            rows.append({"variant": variant, "wall_s": round(wall, 2), "cpu_cores": round(used, 3)})
    if args.json:
        audio = args.audio or "demo track 3"
        write_record(args.json, f"cpu, {cores} cores", seconds_of_audio=args.seconds, audio=audio, rows=rows)


if __name__ == "__main__":
    main()
