"""The stream's rendering alone, without the encoder: the renderer beside a playout that takes audio at real time.

    python bench/stream_render.py --checkpoint runs/demo/checkpoints/best.pt [--seconds 60] [--mode parallel|direct]
    python bench/stream_render.py --model base     # an untrained conf/model/base.yaml: the speed is the same

For a machine without ffmpeg (the bare GPU machines) or to see the renderer's own margin. The same renderer
threads and playout as stream.py (wavenet/stream/), the playout read in 0.1 s chunks on the wall clock, as ffmpeg's
real-time input does. Reports the time to the first audio, the render real-time factor, and underruns: seconds
the playout replayed earlier tracks (parallel), or played anything but live audio once live (direct).
"""

import argparse
import queue
import tempfile
import threading
import time
from pathlib import Path

import torch
from records import write_record

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.config import StreamConfig, model_preset
from wavenet.device import resolve_device
from wavenet.generation import choose_backend
from wavenet.model import WaveNet
from wavenet.stream.backlog import Backlog
from wavenet.stream.gate import GateSettings
from wavenet.stream.playout import Playout
from wavenet.stream.render import LiveRenderer, TrackRenderer

CHUNK_S = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint")
    source.add_argument("--model", help="a conf/model preset, untrained (seed 0): what it renders is noise")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of playout after the first audio")
    parser.add_argument("--mode", choices=["parallel", "direct"], default=None, help="default: direct on CUDA")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch", type=int, default=32, help="tracks per batch (parallel)")
    parser.add_argument("--track-seconds", type=float, default=20.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    device = resolve_device(args.device)
    mode = args.mode or ("direct" if device.type == "cuda" else "parallel")
    if args.checkpoint:
        model = model_from_checkpoint(load_checkpoint(args.checkpoint, device), device)
    else:
        torch.manual_seed(0)
        model = WaveNet(model_preset(args.model)).to(device).eval()
    rate = model.cfg.sample_rate
    backend = choose_backend(model, 1 if mode == "direct" else args.batch) if args.backend == "auto" else args.backend
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        backlog = Backlog(Path(tmp), rate)
        gate = GateSettings(enabled=False)  # the model's own quality is not what this measures
        renderer = TrackRenderer(
            model,
            backlog,
            args.batch,
            args.track_seconds,
            1.0,
            0,
            30.0,
            stop,
            backend=backend,
            gate=gate,
            crossfade_seconds=StreamConfig.crossfade_seconds,  # the stream's defaults
            min_track_seconds=StreamConfig.min_track_seconds,
        )
        renderers = [renderer]
        live = queue.Queue(maxsize=64) if mode == "direct" else None
        if live is not None:  # as in stream.py, the track renderer still fills the backlog the fallback plays from
            renderers.append(LiveRenderer(model, rate, 1.0, 0, live, stop, backend=backend))
        started = time.monotonic()
        for thread in renderers:
            thread.start()
        while not (backlog.indices() and (live is None or live.qsize() >= 4)):  # a track; in direct mode, 1 s live
            if any(thread.error for thread in renderers):
                raise SystemExit(f"the renderer failed: {next(t.error for t in renderers if t.error)}")
            time.sleep(0.05)
        first_audio = time.monotonic() - started
        playout = Playout(backlog, StreamConfig.crossfade_seconds, live, jitter_seconds=1.0)
        late = 0.0  # direct mode: seconds that were not live audio
        clock = time.monotonic()
        for tick in range(int(args.seconds / CHUNK_S)):
            playout.read(int(CHUNK_S * rate))
            renderer.playing_track = playout.next_track - 1
            if live is not None and playout.current.track != -1:
                late += CHUNK_S
            time.sleep(max(0.0, clock + (tick + 1) * CHUNK_S - time.monotonic()))  # real-time pacing, by design
        late = late if live is not None else playout.fallback_seconds
        meter = renderers[-1].meter
        stop.set()
        for thread in renderers:
            thread.join(timeout=60)
    rows = [
        ("mode / backend", f"{mode} / {backend}"),
        ("time to the first audio (s)", f"{first_audio:.1f}"),
        ("render real-time factor", f"{meter.real_time_factor:.2f}x"),
        ("underruns (s)", f"{late:.1f}"),
        ("playout (s)", f"{args.seconds:g}"),
    ]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{where}, torch {torch.__version__}; {args.checkpoint or f'{args.model} (untrained)'}")
    for name, value in rows:
        print(f"{name:<30} {value:>16}")
    if args.json:
        write_record(args.json, where, figures=dict(rows))


if __name__ == "__main__":
    main()
