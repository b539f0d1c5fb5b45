"""Where the persistent kernel's time per sample goes (GPU): its PROFILE build times each block's phases.

    python bench/persistent_profile.py [--models base base20] [--batches 1 16] [--samples 4096] [--json FILE]

For each model, batch and weight type: one warm-up launch, then one timed launch of --samples samples. Printed:
samples/s (per stream and in aggregate, of the profiling build: its clock reads cost a little), the achieved
FLOP/s, the bytes a sample moves (computed from the plan: weights read from shared memory, hand-offs through L2,
the rings), and per block of the first pipeline the microseconds per sample in each phase (persistent.cu's
Profile) and how much of its time it waits. The chain's work is what one sample's critical path computes (each
layer block's layers and hand-on of x, the last one's skip matmuls and hand-on, head block 0's matmuls, sampling
and hand-on of the code); the rest of a sample's time, by difference, is the hand-offs between SMs and the head's
gathering of partial logits.
"""

import argparse
import sys
import time

import torch

from wavenet.config import model_preset
from wavenet.generation.persistent import PHASES, PersistentEngine, Plan
from wavenet.model import WaveNet, WaveNetConfig

# persistent.cu's LayerPhase and HeadPhase, in order
LAYER_PHASES = ["past terms", "wait: x", "layers", "hand x on", "skip matmuls", "wait: skip sum", "hand skip on"]
HEAD_PHASES = ["wait: skip sum", "head matmuls", "logits", "sample", "hand code on"]
WAITS = {"wait: x", "wait: skip sum"}


def flops_per_sample(cfg: WaveNetConfig) -> int:
    """Multiply-adds x 2 of one generated sample: per layer the dilated conv's two taps, the residual and skip 1x1s
    (the last layer's residual is not computed); then the head's two 1x1s."""
    R, G, S, C, L = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.classes, len(cfg.dilations)
    macs = L * (2 * R * 2 * G + G * S) + (L - 1) * G * R + S * S + S * C
    return 2 * macs


def bytes_per_sample(p: Plan) -> dict[str, float]:
    """Bytes one stream's sample moves, from the plan (padded sizes): a pipeline's weights are read from shared
    memory once per step for its streams; hand-offs and rings go through L2."""
    weights = p.layers * p.layer_bytes + p.head_blocks * p.head_bytes
    handoffs = 4 * ((p.layer_blocks - 1) * p.R + p.layer_blocks * p.S + (p.head_blocks - 1) * p.C) + 8
    return {
        "weights_from_shared": weights / p.streams_per_pipeline,
        "handoffs_through_l2": 2 * handoffs,  # written once, read once
        "rings": 2 * 4 * p.layers * p.R,  # each layer's input read at t - d and written
    }


def summarise(profile: torch.Tensor, p: Plan, samples: int) -> list[dict]:
    """The first pipeline's blocks: microseconds per sample in each phase, and the block's time per sample."""
    rows = []
    for block in range(p.blocks_per_pipeline):
        counters = profile[block].tolist()
        clock0, clock1, ns0, ns1 = counters[PHASES:]
        ns_per_cycle = (ns1 - ns0) / max(clock1 - clock0, 1)
        if block < p.layer_blocks:
            names, layers = LAYER_PHASES, p.layer_range(block)
            role = f"layers {layers[0]}-{layers[-1]}"
        else:
            names, role = HEAD_PHASES, f"head {block - p.layer_blocks}"
        us = {name: counters[k] * ns_per_cycle / 1e3 / samples for k, name in enumerate(names)}
        total = (ns1 - ns0) / 1e3 / samples
        waiting = sum(v for k, v in us.items() if k in WAITS)
        rows.append(dict(block=block, role=role, us_per_sample=us, total_us=total, waiting_share=waiting / total))
    return rows


def chain_work_us(rows: list[dict], p: Plan) -> float:
    """Microseconds per sample of work on one sample's critical path (no waiting): see the module's docstring."""
    layer, head0 = rows[: p.layer_blocks], rows[p.layer_blocks]["us_per_sample"]
    work = sum(r["us_per_sample"]["layers"] + r["us_per_sample"]["hand x on"] for r in layer)
    last = layer[-1]["us_per_sample"]
    work += last["skip matmuls"] + last["hand skip on"]
    return work + head0["head matmuls"] + head0["sample"] + head0["hand code on"]


def profile_run(
    model: WaveNet, batch: int, weights: torch.dtype, samples: int, engine_type: type = PersistentEngine
) -> dict:
    """Warm up, then time one launch of `samples` with the profiling build; its figures and the block table."""
    engine = engine_type(model, batch, weight_dtype=weights, profile=True)
    engine.prime(torch.randint(0, model.cfg.classes, (batch, model.receptive_field), device=engine.device))
    engine.generate(min(samples, 256))
    synchronize = torch.cuda.synchronize if engine.device.type == "cuda" else lambda: None
    synchronize()
    start = time.perf_counter()
    engine.generate(samples)
    synchronize()
    wall = time.perf_counter() - start
    p = engine.plan
    rows = summarise(engine.profile.cpu(), p, samples) if len(engine.groups) == 1 else None  # the last launch's
    per_stream = samples / wall
    figures = dict(
        batch=batch,
        weights=str(weights).removeprefix("torch."),
        blocks_per_pipeline=p.blocks_per_pipeline,
        samples_per_s_per_stream=per_stream,
        samples_per_s=per_stream * batch,
        us_per_sample=1e6 / per_stream,
        gflops=flops_per_sample(model.cfg) * per_stream * batch / 1e9,
        bytes_per_sample=bytes_per_sample(p),
        blocks=rows,
    )
    if rows:
        figures["chain_work_us"] = chain_work_us(rows, p)
        figures["handoffs_by_difference_us"] = figures["us_per_sample"] - figures["chain_work_us"]
    return figures


def print_run(name: str, f: dict) -> None:
    print(
        f"\n{name}, batch {f['batch']}, {f['weights']}: {f['samples_per_s_per_stream']:,.0f} samples/s a stream, "
        f"{f['samples_per_s']:,.0f} in all, {f['us_per_sample']:.2f} us a sample, {f['gflops']:.1f} GFLOP/s"
    )
    moved = ", ".join(f"{k.replace('_', ' ')} {v / 1e3:.1f} KB" for k, v in f["bytes_per_sample"].items())
    print(f"  a sample moves (computed from the plan): {moved}")
    if not f["blocks"]:
        print("  (several launches: the block table is for a batch that one launch holds)")
        return
    print(
        f"  the chain's work {f['chain_work_us']:.2f} us; hand-offs, by difference, {f['handoffs_by_difference_us']:.2f} us"
    )
    for r in f["blocks"]:
        phases = "  ".join(f"{k} {v:.2f}" for k, v in r["us_per_sample"].items())
        print(f"  {r['block']:>3} {r['role']:<12} {r['total_us']:6.2f} us, waiting {r['waiting_share']:4.0%}: {phases}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["base", "base20"], help="conf/model/*.yaml names")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/persistent_profile.py needs a CUDA GPU (tests/test_persistent.py runs its summary on CPU)")
    from records import write_record

    device, runs = torch.device("cuda"), []
    for name in args.models:
        torch.manual_seed(0)
        model = WaveNet(model_preset(name)).to(device).eval()
        for batch in args.batches:
            for weights in (torch.float32, torch.bfloat16):
                try:
                    figures = profile_run(model, batch, weights, args.samples)
                except Exception as err:  # one configuration failing is a result; the others still run
                    figures = dict(batch=batch, weights=str(weights), error=f"{type(err).__name__}: {err}")
                    print(f"\n{name}, batch {batch}, {weights}: failed: {figures['error']}")
                else:
                    print_run(name, figures)
                runs.append(dict(model=name, **figures))
                if args.json:
                    write_record(args.json, torch.cuda.get_device_name(device), runs=runs)


if __name__ == "__main__":
    main()
