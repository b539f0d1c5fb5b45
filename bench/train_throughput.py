"""Training throughput: fp32 vs bf16 autocast vs bf16 + torch.compile, beside a plain PyTorch loop, one table.

    python bench/train_throughput.py                      # GPU: base, 16 x 16384 target samples per step
    python bench/train_throughput.py --device cpu --model tiny --batch 4 --target 2048 --steps 5 --json out.json

Each variant: warm-up steps (compilation happens there), then timed steps of the real training step (forward,
bits-per-sample loss, backward, clipping, fused AdamW on CUDA). `plain-bf16+compile` is the loop anyone would
write, in this file: the same model compiled, cross-entropy under bf16 autocast, backward, AdamW, no clipping.
`textbook-bf16+compile` is that loop on the textbook WaveNet (bench/quality.py's baseline: one-hot input through
a 1x1 conv, separate residual and skip convs, the skips summed layer by layer, the head on every position), the
plain PyTorch WaveNet that the GUIDE's training anchor and the issue's 1.3x goal are about. A `-layerwise` variant is the project's step with the skip paths summed one layer at a time and the
head run on every position (LayerwiseSkips), as the model did before 2026-12-02. Prints ms/step, target
samples/s and peak memory; ratios against the first variant and against plain.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from records import write_record

from wavenet.config import model_preset
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.training import optimization_step


class LayerwiseSkips(torch.nn.Module):
    """The project's model with its skip paths summed the textbook way, one layer's 1x1 conv at a time, and the head
    run on every position: what `WaveNet.skip_sum` and `last` replaced (the `-layerwise` variants)."""

    def __init__(self, model: WaveNet):
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor, last: int | None = None) -> torch.Tensor:
        m = self.model
        x, skips = m.embed(codes).transpose(1, 2), 0
        for layer in m.layers:
            filt, gate = layer.dilated(F.pad(x, (layer.dilation, 0))).chunk(2, dim=1)
            residual, skip = layer.out(torch.tanh(filt) * torch.sigmoid(gate)).split(layer.split, dim=1)
            x, skips = x + residual, skips + skip
        logits = m.head(skips)
        return logits if last is None else logits[:, :, logits.shape[2] - last :]


def measure(cfg: WaveNetConfig, device: torch.device, variant: str, batch: int, target: int, steps: int, warmup: int):
    torch.manual_seed(0)
    model = WaveNet(cfg).to(device)
    layerwise = variant.endswith("-layerwise")
    variant = variant.removesuffix("-layerwise")
    if variant.startswith("textbook"):
        from quality import PlainWaveNet  # bench/quality.py's baseline

        torch.manual_seed(0)
        model = PlainWaveNet(cfg).to(device)
    net = LayerwiseSkips(model) if layerwise else model
    net = torch.compile(net) if variant.endswith("bf16+compile") else net
    params = list(model.parameters())
    plain = variant.startswith(("plain", "textbook"))
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda" and not plain)
    codes = torch.randint(0, 256, (batch, cfg.receptive_field + target), device=device)
    bf16 = variant != "fp32"

    def step() -> torch.Tensor:
        if plain:
            return plain_step(net, optimizer, codes, cfg.receptive_field)
        return optimization_step(net, params, optimizer, codes, cfg.receptive_field, 1.0, bf16)[0]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # wait for the last step
    elapsed = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    torch._dynamo.reset()
    return elapsed, batch * target / elapsed, peak


def plain_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, codes: torch.Tensor, rf: int) -> torch.Tensor:
    """The textbook step: logits for every position after the first receptive field, cross-entropy, update."""
    with torch.autocast(codes.device.type, dtype=torch.bfloat16):
        logits = net(codes[:, :-1])[:, :, rf - 1 :]
    loss = F.cross_entropy(logits.float(), codes[:, rf:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="base", help="a conf/model/*.yaml name")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--target", type=int, default=16384, help="predicted samples per window")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=[
            *(
                "fp32",
                "bf16",
                "bf16+compile",
                "plain-bf16",
                "plain-bf16+compile",
                "textbook-bf16",
                "textbook-bf16+compile",
            ),
            *("fp32-layerwise", "bf16-layerwise", "bf16+compile-layerwise"),
        ],
        help="default: fp32 bf16 bf16+compile plain-bf16+compile textbook-bf16+compile bf16+compile-layerwise "
        "(CUDA), fp32 fp32-layerwise plain-bf16 (CPU)",
    )
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda_variants = [
        "fp32",
        "bf16",
        "bf16+compile",
        "plain-bf16+compile",
        "textbook-bf16+compile",
        "bf16+compile-layerwise",
    ]
    variants = args.variants or (cuda_variants if device.type == "cuda" else ["fp32", "fp32-layerwise", "plain-bf16"])
    cfg = model_preset(args.model)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"{name}, torch {torch.__version__}; model {args.model} ({len(cfg.dilations)} layers), "
        f"batch {args.batch} x {args.target} target samples (+{cfg.receptive_field - 1} context)"
    )
    header = f"{'variant':<22} {'ms/step':>9} {'samples/s':>12} {'peak GiB':>9} {'vs first':>9}"
    print(header)
    print("-" * len(header))
    rows, measured = [], []
    for variant in variants:
        try:
            ms, rate, peak = measure(cfg, device, variant, args.batch, args.target, args.steps, args.warmup)
        except Exception as err:  # one variant failing (out of memory, a compile error) is a result
            print(f"{variant:<22} failed: {err}", flush=True)
            rows.append({"variant": variant, "error": str(err)[:500]})
        else:
            row = {"variant": variant, "ms_per_step": ms * 1000, "samples_per_s": rate, "peak_gib": peak}
            rows.append(row)
            measured.append(row)
            shown = "-" if peak is None else f"{peak:.2f}"
            vs_first = rate / measured[0]["samples_per_s"]
            print(f"{variant:<22} {ms * 1000:>9.1f} {rate:>12,.0f} {shown:>9} {vs_first:>8.2f}x", flush=True)
        if args.json:  # after every variant: a run stopped at a time limit keeps what it measured
            write_record(args.json, name, model=args.model, batch=args.batch, target=args.target, rows=rows)
    ours = [r for r in measured if not r["variant"].startswith(("plain", "textbook"))]
    best = max(ours, key=lambda r: r["samples_per_s"], default=None)
    for kind in ("plain", "textbook"):
        reference = next((r for r in measured if r["variant"].startswith(kind)), None)
        if reference is None:
            continue
        for row in measured:
            row[f"vs_{kind}"] = row["samples_per_s"] / reference["samples_per_s"]
        if best:
            print(f"the project's best ({best['variant']}) vs {reference['variant']}: {best[f'vs_{kind}']:.2f}x")
    if args.json:
        write_record(args.json, name, model=args.model, batch=args.batch, target=args.target, rows=rows)


if __name__ == "__main__":
    main()
