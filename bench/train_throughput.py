"""Training throughput: fp32 vs bf16 autocast vs bf16 + torch.compile, one table, ratios against fp32.

    python bench/train_throughput.py                      # GPU: base, 16 x 16384 target samples per step
    python bench/train_throughput.py --device cpu --model tiny --batch 4 --target 2048 --steps 5

Each variant: warm-up steps (compilation happens there), then timed steps of the real training step (forward,
bits-per-sample loss, backward, clipping, fused AdamW on CUDA). Prints ms/step, target samples/s and peak memory.
"""

import argparse
import time

import torch

from wavenet.config import model_preset
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.training import optimization_step


def measure(cfg: WaveNetConfig, device: torch.device, variant: str, batch: int, target: int, steps: int, warmup: int):
    torch.manual_seed(0)
    model = WaveNet(cfg).to(device)
    net = torch.compile(model) if variant == "bf16+compile" else model
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    codes = torch.randint(0, 256, (batch, cfg.receptive_field + target), device=device)
    bf16 = variant != "fp32"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        optimization_step(net, params, optimizer, codes, cfg.receptive_field, 1.0, bf16)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = optimization_step(net, params, optimizer, codes, cfg.receptive_field, 1.0, bf16)
    loss.item()  # wait for the last step
    elapsed = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    torch._dynamo.reset()
    return elapsed, batch * target / elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="base", help="a conf/model/*.yaml name")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--target", type=int, default=16384, help="predicted samples per window")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--variants", nargs="+", default=None, help="default: fp32 bf16 bf16+compile (CUDA), fp32 (CPU)"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    variants = args.variants or (["fp32", "bf16", "bf16+compile"] if device.type == "cuda" else ["fp32"])
    cfg = model_preset(args.model)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"{name}, torch {torch.__version__}; model {args.model} ({len(cfg.dilations)} layers), "
        f"batch {args.batch} x {args.target} target samples (+{cfg.receptive_field - 1} context)"
    )
    header = f"{'variant':<13} {'ms/step':>9} {'samples/s':>12} {'peak GiB':>9} {'vs fp32':>8}"
    print(header)
    print("-" * len(header))
    baseline = None
    for variant in variants:
        ms, rate, peak = measure(cfg, device, variant, args.batch, args.target, args.steps, args.warmup)
        baseline = baseline or rate
        print(f"{variant:<13} {ms * 1000:>9.1f} {rate:>12,.0f} {peak:>9.2f} {rate / baseline:>7.2f}x")


if __name__ == "__main__":
    main()
