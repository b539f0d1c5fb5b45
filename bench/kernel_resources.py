"""The fused generation kernels' resource use per layout, compiled for an NVIDIA GPU here, without one.

    python bench/kernel_resources.py                         # Triton; base; 1 and 256 streams; fp32 and bf16; 8 warps
    python bench/kernel_resources.py --models base large --warps 4 8 16 --capability 90
    python bench/kernel_resources.py --kernel persistent --models base20 base --batches 1 16

Registers per thread, bytes spilled to local memory per thread, and shared memory per program (block), from
Triton's own ptxas and cuobjdump, or for the persistent kernel from NVRTC's ptxas report, with that kernel's
plan (layers per block, blocks per pipeline). Spills and shared memory over the GPU's limit (227 KB on an H100)
show before a GPU does. Run with TRITON_INTERPRET unset: the interpreter replaces the kernel with a Python function.
"""

import argparse
import json
import os

import torch

from wavenet.config import model_preset

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["base"], help="conf/model names")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--warps", nargs="+", type=int, default=[8])
    parser.add_argument("--capability", type=int, default=90, help="compute capability: 90 for H100/H200")
    parser.add_argument("--kernel", choices=["triton", "persistent"], default="triton")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    args = parser.parse_args()
    if args.kernel == "persistent":
        return persistent_table(args)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: the interpreter cannot compile the kernel")
    from wavenet.generation.triton_kernel import compile_ahead, kernel_layout

    if not args.json:
        print(
            f"{'model':<7} {'batch':>5} {'dtype':<5} {'warps':>5} {'streams/program':>15} {'registers':>9} {'spilled B':>9} {'shared KB':>9}"
        )
    for name in args.models:
        for batch in args.batches:
            for dtype in args.dtypes:
                for warps in args.warps:
                    layout = kernel_layout(model_preset(name), batch, DTYPES[dtype], block_streams=None)
                    usage = compile_ahead(layout, DTYPES[dtype], warps, args.capability)
                    row = dict(model=name, batch=batch, dtype=dtype, warps=warps, block=layout["BLOCK_B"], **usage)
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        print(
                            f"{name:<7} {batch:>5} {dtype:<5} {warps:>5} {layout['BLOCK_B']:>15} {usage['registers']:>9} "
                            f"{usage['spilled_bytes']:>9} {usage['shared_bytes'] / 1024:>9.1f}",
                            flush=True,
                        )


def persistent_table(args) -> None:
    """The persistent kernel (its thread count is fixed: --warps does not apply)."""
    from wavenet.generation.persistent import THREADS, compiled, plan

    if not args.json:
        print(
            f"{'model':<7} {'batch':>5} {'dtype':<5} {'streams/pipeline':>16} {'layers/block':>12} {'blocks':>6} "
            f"{'registers':>9} {'spilled B':>9} {'shared KB':>9}"
        )
    for name in args.models:
        for batch in args.batches:
            for dtype in args.dtypes:
                p = plan(model_preset(name), batch, DTYPES[dtype])
                kernel = compiled(p, args.capability)
                row = dict(
                    model=name, batch=batch, dtype=dtype, threads=THREADS, streams_per_pipeline=p.streams_per_pipeline,
                    layers_per_block=p.layers_per_block, layer_blocks=p.layer_blocks, head_blocks=p.head_blocks,
                    registers=kernel.registers, spilled_bytes=kernel.spilled_bytes + kernel.stack_bytes,
                    shared_bytes=p.shared_bytes + kernel.static_shared_bytes,
                )  # fmt: skip
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(
                        f"{name:<7} {batch:>5} {dtype:<5} {p.streams_per_pipeline:>16} {p.layers_per_block:>12} "
                        f"{p.blocks_per_pipeline:>6} {kernel.registers:>9} {row['spilled_bytes']:>9} "
                        f"{row['shared_bytes'] / 1024:>9.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
