"""Generation speed of every backend: samples/s per stream, aggregate, real-time factor, one table.

    python bench/generation.py                  # CUDA: naive, cached, graph, triton, triton-bf16
                                                #   at batch 1, 16, 256 for 20 and 30 layers
    python bench/generation.py --device cpu --models tiny base --batches 1 16
    python bench/generation.py --device cpu --checkpoint runs/demo/checkpoints/best.pt --batches 1

Each row: an engine primed with a full receptive field of random codes, warmed up (compilation, graph capture
and the first launches happen there), then timed in steady state, the sample count growing until one timed run
takes at least --seconds. Ratios are against naive (the full-forward reference) and cached (eager PyTorch).
--triton-sweep adds rows triton[-bf16]:S:W, the kernel with S streams per program and W warps, to tune the
layout that TritonEngine picks by default (1 stream per program below 32 streams, else 16; 8 warps).
"""

import argparse
import time
from pathlib import Path

import torch

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.config import model_preset
from wavenet.generation import Engine, make_engine
from wavenet.model import WaveNet


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make(model: WaveNet, batch: int, variant: str) -> Engine:
    """A backend name, or a Triton layout from --triton-sweep: triton[-bf16]:STREAMS_PER_PROGRAM:WARPS."""
    if ":" not in variant:
        return make_engine(model, batch, variant, temperature=1.0, seed=0)
    from wavenet.generation.triton_kernel import TritonEngine

    name, block, warps = variant.split(":")
    dtype = torch.bfloat16 if name == "triton-bf16" else torch.float32
    return TritonEngine(model, batch, weight_dtype=dtype, block_streams=int(block), num_warps=int(warps))


@torch.inference_mode()
def samples_per_second(model: WaveNet, variant: str, batch: int, budget: float) -> float:
    """Aggregate samples/s of one variant in steady state."""
    device = next(model.parameters()).device
    engine = make(model, batch, variant)
    engine.prime(torch.randint(0, model.cfg.classes, (batch, model.receptive_field + 1), device=device))
    engine.generate(2 if variant == "naive" else 128)  # warm-up: compilation, graph capture, first launches
    count = 4
    while True:
        synchronize(device)
        start = time.perf_counter()
        engine.generate(count)
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return count * batch / elapsed
        count = int(count * min(10.0, 1.3 * budget / max(elapsed, 1e-4))) + 1
        count = 64 * (count // 64 + 1) if count > 64 else count  # whole CUDA graphs of 64 steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=None, help="conf/model names; default by device")
    parser.add_argument("--checkpoint", default=None, help="time this trained model instead of --models")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 16 256 (CUDA), 1 16 (CPU)")
    parser.add_argument("--backends", nargs="+", default=None, help="default: all for the device")
    parser.add_argument("--seconds", type=float, default=2.0, help="wall time per measurement")
    parser.add_argument(
        "--triton-sweep", action="store_true", help="also time Triton layouts: streams per program x warps"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batches = args.batches or ([1, 16, 256] if cuda else [1, 16])
    backends = args.backends or (["naive", "cached", "graph", "triton", "triton-bf16"] if cuda else ["naive", "cached"])
    torch.manual_seed(0)
    if args.checkpoint:
        models = {Path(args.checkpoint).name: model_from_checkpoint(load_checkpoint(args.checkpoint, device), device)}
    else:
        names = args.models or (["base20", "base"] if cuda else ["tiny", "base"])
        models = {name: WaveNet(model_preset(name)).to(device) for name in names}
    where = torch.cuda.get_device_name(device) if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}; weights fp32 unless the backend says bf16")
    header = (
        f"{'model':<8} {'layers':>6} {'batch':>5} {'backend':<17} {'per stream/s':>13} {'aggregate/s':>12} "
        f"{'x real time':>11} {'vs naive':>9} {'vs cached':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, model in models.items():
        model.eval()
        cfg = model.cfg
        for batch in batches:
            rates: dict[str, float] = {}
            variants = list(backends)
            if args.triton_sweep:
                variants += [
                    f"{name}:{block}:{warps}"
                    for name in ("triton", "triton-bf16")
                    for block in (1, 16, 32, 64)
                    if block <= max(16, batch)
                    for warps in (4, 8, 16)
                ]
            for backend in variants:
                rates[backend] = rate = samples_per_second(model, backend, batch, args.seconds)
                ratios = [f"{rate / rates[ref]:>8.1f}x" if ref in rates else f"{'-':>9}" for ref in ("naive", "cached")]
                print(
                    f"{name:<8} {len(cfg.dilations):>6} {batch:>5} {backend:<17} {rate / batch:>13,.1f} {rate:>12,.0f} "
                    f"{rate / batch / cfg.sample_rate:>11.3f} {' '.join(ratios)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
