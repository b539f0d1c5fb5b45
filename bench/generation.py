"""Generation speed: naive (full forward over the receptive field per sample) vs cached (one step per sample).

    python bench/generation.py [--device cpu] [--models tiny base] [--batches 1 16] [--seconds 3]

Prints one table: samples/s per stream, aggregate samples/s, real-time factor (16 kHz), and cached / naive.
Each variant runs in steady state (primed with a full receptive field, priming not timed) for about --seconds.
"""

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from wavenet.generation import generate
from wavenet.model import WaveNet, WaveNetConfig

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_config(name: str) -> WaveNetConfig:
    return WaveNetConfig(**OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")))


def stamp(stamps: list[float], device: torch.device) -> None:
    """Record when a sample was finished (after the GPU work, on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    stamps.append(time.perf_counter())


def samples_per_second(model: WaveNet, engine: str, batch: int, budget: float) -> float:
    """Aggregate samples/s in steady state: timed from the first new sample to the last, so priming is left out.

    The sample count grows until one timed run takes at least `budget` seconds.
    """
    device = next(model.parameters()).device
    prime = torch.randint(0, 256, (batch, model.receptive_field), device=device)
    count = 3
    while True:
        stamps: list[float] = []
        generate(model, count, batch, prime=prime, engine=engine, progress=lambda _n, s=stamps: stamp(s, device))
        elapsed = stamps[-1] - stamps[0]
        if elapsed >= budget:
            return (count - 1) * batch / elapsed
        count = int(count * min(10.0, 1.5 * budget / max(elapsed, 1e-3))) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["tiny", "base"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="wall time per measurement")
    args = parser.parse_args()

    torch.manual_seed(0)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    header = f"{'model':<6} {'layers':>6} {'batch':>5} {'engine':<7} {'per stream/s':>13} {'aggregate/s':>12} {'x real time':>11} {'vs naive':>9}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        cfg = model_config(name)
        model = WaveNet(cfg).to(args.device).eval()
        for batch in args.batches:
            naive = None
            for engine in ("naive", "cached"):
                rate = samples_per_second(model, engine, batch, args.seconds)
                naive = naive or rate
                print(
                    f"{name:<6} {len(cfg.dilations):>6} {batch:>5} {engine:<7} {rate / batch:>13,.1f} {rate:>12,.0f} "
                    f"{rate / batch / cfg.sample_rate:>11.3f} {rate / naive:>8.1f}x"
                )


if __name__ == "__main__":
    main()
