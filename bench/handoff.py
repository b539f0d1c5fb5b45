"""How long a hand-off between two SMs takes: the step the persistent kernel takes 32 times per sample of base.

    python bench/handoff.py [--floats 0 64 256 512 2048] [--rounds 20000] [--json FILE]    # a CUDA GPU (sm_90)
    python bench/handoff.py --compile-only                                                 # here: resources only

Two blocks, one per SM, hand a payload back and forth (bench/handoff.cu): through global memory and flags, as
persistent.cu does today, and through a thread-block cluster's distributed shared memory (Hopper), the way the
issue names for fewer microseconds per sample. Each row: one-way time (half a round trip, the mean over --rounds),
the SMs the two blocks ran on, and payload mismatches, which must be 0. Then what the measured hand-offs alone
allow one stream of base with the persistent plan (fp32: 29 hand-offs of the residual stream, the skip sum and the
partial logits to the head, the code back to layer 0; bf16: 9 + 3): an upper bound, not a prediction of the kernel.
"""

import argparse
import ctypes
import sys
from pathlib import Path

import torch

from wavenet.generation.nvrtc import Compiled, CudaKernel, compile_cuda

SOURCE = Path(__file__).with_name("handoff.cu")
KERNELS = {"global": "handoff_global", "cluster": "handoff_cluster"}
THREADS = 256
MAX_FLOATS = 2048  # 8 KB: the largest hand-off of the persistent kernel (8 streams x skip 256)
ONE_BLOCK_PER_SM = 120 * 1024  # dynamic shared memory, unused: more than half an SM's, so no SM holds both blocks
# hand-offs on one sample's critical path in the persistent plan for base (persistent.py): payload floats -> count
CRITICAL_PATH = {"fp32": {64: 29, 256: 2, 0: 1}, "bf16": {64: 9, 256: 2, 0: 1}}


class Params(ctypes.Structure):
    _fields_ = [
        ("slots", ctypes.c_void_p),
        ("flags", ctypes.c_void_p),
        ("result", ctypes.c_void_p),
        ("error", ctypes.c_void_p),
        ("rounds", ctypes.c_int),
        ("floats", ctypes.c_int),
    ]


DEFINES = (("THREADS", THREADS), ("MAX_FLOATS", MAX_FLOATS), ("PARAMS_BYTES", ctypes.sizeof(Params)))


def compiled(capability: int) -> Compiled:
    return compile_cuda(SOURCE.read_text(), SOURCE.name, DEFINES, capability)


def measure(kernel: CudaKernel, way: str, floats: int, rounds: int, device: torch.device) -> dict:
    """One ping-pong launch of `rounds` round trips; the kernel times itself on the GPU's global timer."""
    slots = torch.zeros(2, MAX_FLOATS, device=device)
    flags = torch.zeros(2, 32, dtype=torch.int32, device=device)
    result = torch.zeros(4, dtype=torch.int64, device=device)
    error = torch.zeros(1, dtype=torch.int32, device=device)
    params = Params(slots.data_ptr(), flags.data_ptr(), result.data_ptr(), error.data_ptr(), rounds, floats)
    kernel.launch(2, params, cooperative=way == "global")
    torch.cuda.synchronize(device)
    if error.item():
        raise RuntimeError(f"{way}, {floats} floats: a block gave up waiting (1 s): the hand-off never arrived")
    ns, bad, sm0, sm1 = result.tolist()
    return dict(way=way, floats=floats, rounds=rounds, one_way_ns=ns / (2 * rounds), sms=[sm0, sm1], mismatches=bad)


def bound(rows: list[dict], way: str, weights: str) -> float | None:
    """Samples/s that one stream of base cannot exceed with hand-offs of this way alone (None if not measured)."""
    ns = {r["floats"]: r["one_way_ns"] for r in rows if r["way"] == way}
    path = CRITICAL_PATH[weights]
    if not all(f in ns for f in path):
        return None
    return 1e9 / sum(count * ns[f] for f, count in path.items())


def main() -> None:
    from records import write_record  # bench/records.py: on the path when this runs as a script

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floats", nargs="+", type=int, default=[0, 64, 256, 512, 2048])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--ways", nargs="+", choices=list(KERNELS), default=list(KERNELS))
    parser.add_argument("--compile-only", action="store_true", help="compile for sm_90 and print the resources")
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args()
    if any(not 0 <= f <= MAX_FLOATS for f in args.floats):
        parser.error(f"--floats: each from 0 to {MAX_FLOATS}")
    if args.compile_only:
        for line in compiled(90).log.splitlines():  # ptxas's report, kernel by kernel
            if "entry function" in line or "registers" in line or "spill" in line:
                print(line.removeprefix("ptxas info    : ").removeprefix("ptxas         .     "))
        return
    if not torch.cuda.is_available():
        sys.exit("bench/handoff.py needs a CUDA GPU (sm_90 for the cluster way); --compile-only runs without one")
    device = torch.device("cuda")
    major, minor = torch.cuda.get_device_capability(device)
    program = compiled(major * 10 + minor)
    kernels = {way: CudaKernel(program, KERNELS[way], THREADS, ONE_BLOCK_PER_SM, device) for way in args.ways}
    rows = []
    print(f"{'way':<8} {'floats':>6} {'one-way ns':>10} {'SMs':>9} {'mismatches':>10}")
    for way in args.ways:
        measure(kernels[way], way, 64, 100, device)  # warm-up: the module's first launch
        for floats in args.floats:
            row = measure(kernels[way], way, floats, args.rounds, device)
            rows.append(row)
            print(f"{way:<8} {floats:>6} {row['one_way_ns']:>10.0f} {str(row['sms']):>9} {row['mismatches']:>10}")
            if args.json:
                write_record(args.json, torch.cuda.get_device_name(device), rows=rows)
    bounds = {f"{way}-{weights}": bound(rows, way, weights) for way in args.ways for weights in CRITICAL_PATH}
    print("\nbase, one stream, at most (hand-offs alone, the persistent plan's critical path):")
    for name, value in bounds.items():
        if value:
            print(f"  {name:<16} {value:>9,.0f} samples/s")
    if args.json:
        write_record(args.json, torch.cuda.get_device_name(device), rows=rows, bounds_samples_per_s=bounds)
    if any(r["mismatches"] for r in rows):
        sys.exit("a payload arrived wrong: the hand-off's ordering is broken")


if __name__ == "__main__":
    main()
