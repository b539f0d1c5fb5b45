"""The stream's encode alone: the exact ffmpeg command stream.py runs, fed in real time, for each x264 preset.

    python bench/stream_encode.py [--seconds 20] [--presets ultrafast veryfast faster]

Prints, per preset, the wall time for --seconds of audio (1.00x = holds real time), the CPU it took in cores
(of this machine's), and the headroom left on the machine. Input: a demo track (synthesised if missing).
"""

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from data_prep.demo_corpus import SAMPLE_RATE, make_corpus
from wavenet.audio import read_wav
from wavenet.stream.encoder import EncoderSettings, ffmpeg_args
from wavenet.stream.picture import draw_default_background, write_now_playing


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--presets", nargs="+", default=["ultrafast", "veryfast", "faster"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "corpus", tracks=1, seed=3, log=lambda *_: None)
        audio, _ = read_wav(tmp / "corpus" / "demo_003_000.wav")
        audio = np.resize(audio, int(args.seconds * SAMPLE_RATE))
        pcm = (audio * 32767).astype("<i2").tobytes()
        background = draw_default_background(tmp / "background.png")
        now_playing = tmp / "now_playing.txt"
        write_now_playing(now_playing, "lofi-wavenet radio  |  track 1\nbenchmark")
        cores = os.cpu_count() or 1
        print(f"encode of {args.seconds:g} s: 1280x720 30 fps H.264 CBR 1500k + AAC 128k, -re paced, {cores} cores")
        print(f"{'preset':<10} {'wall s':>7} {'speed':>7} {'CPU cores':>10} {'headroom':>9}")
        print("-" * 47)
        for preset in args.presets:
            cmd = ffmpeg_args(
                str(tmp / f"{preset}.flv"), SAMPLE_RATE, background, now_playing, EncoderSettings(preset=preset)
            )
            cpu0, start = children_cpu(), time.perf_counter()
            subprocess.run(cmd, input=pcm, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            used = (children_cpu() - cpu0) / wall
            print(f"{preset:<10} {wall:>7.1f} {args.seconds / wall:>6.2f}x {used:>10.2f} {1 - used / cores:>8.0%}")


if __name__ == "__main__":
    main()
