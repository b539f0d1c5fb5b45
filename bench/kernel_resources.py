"""The Triton generation kernel's resource use per layout, compiled for an NVIDIA GPU here, without one.

    python bench/kernel_resources.py                         # base; 1 and 256 streams; fp32 and bf16; 8 warps
    python bench/kernel_resources.py --models base large --warps 4 8 16 --capability 90

Registers per thread, bytes spilled to local memory per thread, and shared memory per program, from Triton's
own ptxas and cuobjdump. Spills and shared memory over the GPU's limit (227 KB on an H100) show before a GPU does.
Run with TRITON_INTERPRET unset: the interpreter replaces the kernel with a Python function.
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
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
