"""Soak test: run the livestream for N minutes into a local ingest (nginx-rtmp on loopback) and report underruns,
reconnects, real-time factor and CPU use.

    python bench/stream_soak.py --checkpoint runs/demo/checkpoints/best.pt [--minutes 10] [--json OUT] [overrides ...]

An underrun is a gap in what the audience gets: a stretch of 0.25 s or more of silence in the audio pulled back
from the ingest, or pulled audio falling behind the wall clock. CPU use is the stream's process tree
(python + ffmpeg), in cores, over the whole run, and split into the encoder (ffmpeg) and the rest (rendering,
playout). Time to live: from starting stream.py to its first status (the first batch rendered, ffmpeg started).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import write_record

from wavenet.stream.rtmp_server import LocalRtmp

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children, living and reaped."""
    return sum(seconds for proc in [pid, *children(pid)] for _, seconds in [process_cpu(proc)])


def encoder_seconds(pid: int) -> float:
    """CPU seconds of the stream's ffmpeg children (a restarted encoder's predecessors are not counted)."""
    return sum(seconds for proc in children(pid) for name, seconds in [process_cpu(proc)] if name == "ffmpeg")


def process_cpu(pid: int) -> tuple[str, float]:
    """A process's command name and its utime + stime + cutime + cstime in seconds; ("", 0) once it has ended."""
    try:
        name, fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except (FileNotFoundError, ProcessLookupError):
        return "", 0.0
    return name.split("(", 1)[1], sum(int(x) for x in fields.split()[11:15]) / TICK


def children(pid: int) -> list[int]:
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in children(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("overrides", nargs="*", help="extra stream.py overrides (batch_size=..., track_seconds=...)")
    args = parser.parse_args()
    seconds = args.minutes * 60

    with tempfile.TemporaryDirectory() as tmp, LocalRtmp(Path(tmp) / "nginx") as ingest:
        workdir = Path(tmp) / "stream"
        url = ingest.url("live", "soak")
        cmd = [
            sys.executable,
            str(ROOT / "stream.py"),
            f"checkpoint={Path(args.checkpoint).resolve()}",
            "sink=rtmp",
            f"sink.url={url}",
            f"workdir={workdir}",
            *args.overrides,
        ]
        launched = time.monotonic()
        stream = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pulled = Path(tmp) / "pulled.aac"
        puller = subprocess.Popen(
            [
                "ffmpeg",
                "-v",
                "error",
                "-rw_timeout",
                "600000000",
                "-i",
                url,
                "-vn",
                "-c:a",
                "copy",
                "-f",
                "adts",
                "-y",
                str(pulled),
            ]
        )
        while not (workdir / "status.json").exists():  # rendering the first tracks: not part of the soak
            if stream.poll() is not None:
                raise SystemExit(f"stream.py exited with {stream.returncode}")
            time.sleep(1)
        start, cpu_start, encode_start = time.monotonic(), cpu_seconds(stream.pid), encoder_seconds(stream.pid)
        time_to_live = start - launched
        time.sleep(seconds)  # the soak itself
        wall = time.monotonic() - start
        cpu = (cpu_seconds(stream.pid) - cpu_start) / wall
        encode = (encoder_seconds(stream.pid) - encode_start) / wall
        status = json.loads((workdir / "status.json").read_text())
        puller.terminate()  # ffmpeg closes its output cleanly on SIGTERM
        puller.wait(timeout=60)
        stream.terminate()
        stream.wait(timeout=60)
        got = float(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(pulled)],
                capture_output=True,
                text=True,
            ).stdout
            or 0
        )
        detect = subprocess.run(
            ["ffmpeg", "-i", str(pulled), "-af", "silencedetect=noise=-50dB:d=0.25", "-f", "null", "-"],
            capture_output=True,
            text=True,
        ).stderr
        gaps = len(re.findall(r"silence_start", detect))

    print(
        f"soak: {args.minutes:g} minutes into nginx-rtmp on loopback, {os.cpu_count()} cores; overrides {args.overrides}"
    )
    print(f"{'measure':<34} {'value':>12}")
    print("-" * 47)
    rows = [
        ("time to live (s)", f"{time_to_live:.1f}"),
        ("audio pulled back (s)", f"{got:.1f}"),
        ("wall time live (s)", f"{seconds:.1f}"),
        ("underruns: silent gaps >= 0.25 s", f"{gaps}"),
        ("reconnects", f"{status['reconnects']}"),
        ("render real-time factor", f"{status['real_time_factor']:.2f}x"),
        ("fallback (s)", f"{status['fallback_seconds']:.1f}"),
        ("backlog at the end (min)", f"{status['backlog_minutes']:.1f}"),
        ("CPU, stream + ffmpeg (cores)", f"{cpu:.2f}"),
        ("CPU, of which the encoder (cores)", f"{encode:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:<34} {value:>12}")
    if args.json:
        write_record(args.json, f"cpu, {os.cpu_count()} cores", figures=dict(rows), status_at_the_end=status)


if __name__ == "__main__":
    main()
