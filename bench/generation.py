"""Generation speed of every backend: samples/s per stream, aggregate, real-time factor, one table.

    python bench/generation.py                  # CUDA: naive, plain, plain-graph, cached, graph, triton[-bf16],
                                                #   persistent[-bf16] at batch 1, 16, 256 for 20 and 30 layers
    python bench/generation.py --device cpu --models tiny base --batches 1 16 32 --threads 1 2 --json out.json
    python bench/generation.py --device cpu --checkpoint runs/demo/checkpoints/best.pt --batches 1

Each row: an engine primed with a full receptive field of random codes, warmed up (compilation, graph capture
and the first launches happen there), then timed in steady state, the sample count growing until one timed run
takes at least --seconds. Ratios are against naive (the full-forward reference), cached (eager PyTorch) and
plain: a textbook cached step written here in plain PyTorch (a queue of past inputs per layer, conv weights used
as they are, Gumbel-max sampling), which is what anyone would write without this project, checked against the
full forward before it is timed; on CUDA also plain-graph, that step captured 64 at a time in a CUDA graph. A
backend that fails gets a row saying so, and the others still run (the persistent kernels come after every
other row: a fault in one can leave the GPU unusable for the rest of the process). With --json the record is
written again after every row.
triton[-bf16]:spread rows (32 streams and more): the kernel with a program's streams sized to spread the batch
over every SM (256 streams on 132 SMs: 2 per program) instead of 16 per program.
--triton-sweep adds rows triton[-bf16]:S:W, the kernel with S streams per program and W warps, to tune the
layout that TritonEngine picks by default (1 stream per program below 32 streams, else 16; 8 warps).
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from records import write_record

from wavenet.checkpoint import load_checkpoint, model_from_checkpoint
from wavenet.config import model_preset
from wavenet.generation import Engine, make_engine
from wavenet.generation.engine import true_fp32
from wavenet.model import WaveNet


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainCachedStep:
    """The plain PyTorch reference: one cached step the textbook way, for speed comparisons."""

    def __init__(self, model: WaveNet, batch: int):
        self.model, self.t = model, 0
        device = next(model.parameters()).device
        R = model.cfg.residual_channels
        self.queues = [torch.zeros(layer.dilation, batch, R, device=device) for layer in model.layers]  # past inputs
        self.pending = torch.full((batch,), 128, dtype=torch.long, device=device)

    def _past(self, queue: torch.Tensor) -> torch.Tensor:
        return queue[self.t % queue.shape[0]]

    def _store(self, queue: torch.Tensor, x: torch.Tensor) -> None:
        queue[self.t % queue.shape[0]] = x

    def _advance(self) -> None:
        self.t += 1

    def step(self, codes: torch.Tensor) -> torch.Tensor:
        x, skips = self.model.embed(codes), 0
        for layer, queue in zip(self.model.layers, self.queues, strict=True):
            w = layer.dilated.weight  # (2G, R, 2): tap 0 sees t - d, tap 1 sees t
            h = F.linear(self._past(queue), w[:, :, 0]) + F.linear(x, w[:, :, 1], layer.dilated.bias)
            self._store(queue, x)
            filt, gate = h.chunk(2, dim=1)
            out = F.linear(torch.tanh(filt) * torch.sigmoid(gate), layer.out.weight[:, :, 0], layer.out.bias)
            residual, skip = out.split(layer.split, dim=1)
            x, skips = x + residual, skips + skip
        head = self.model.head
        h = F.linear(F.relu(skips), head[1].weight[:, :, 0], head[1].bias)
        self._advance()
        return F.linear(F.relu(h), head[3].weight[:, :, 0], head[3].bias)

    def generate(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            logits = self.step(self.pending)
            self.pending.copy_((logits - torch.log(-torch.log(torch.rand_like(logits)))).argmax(-1))
            out.append(self.pending.clone())
        return torch.stack(out, 1)

    def check(self) -> None:
        """Teacher-forced logits against the full forward, past the receptive field."""
        shape = (self.pending.shape[0], self.model.receptive_field + 8)
        codes = torch.randint(0, self.model.cfg.classes, shape, device=self.pending.device)
        with true_fp32():  # no TF32 in the reference
            full = self.model(codes)[:, :, -8:].transpose(1, 2)
        for s in range(codes.shape[1] - 8):
            self.step(codes[:, s])
        logits = torch.stack([self.step(codes[:, s]) for s in range(codes.shape[1] - 8, codes.shape[1])], 1)
        error = ((logits - full).abs().max() / full.abs().max()).item()
        assert error < 1e-4, f"the plain reference disagrees with the full forward ({error:.1e})"


class PlainGraphStep(PlainCachedStep):
    """The plain step with its position kept on the device, 64 steps captured in one CUDA graph: how one cuts launch
    overhead in plain PyTorch without a kernel of one's own."""

    STEPS = 64

    def __init__(self, model: WaveNet, batch: int):
        super().__init__(model, batch)
        self.position = torch.zeros(1, dtype=torch.long, device=self.pending.device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _past(self, queue: torch.Tensor) -> torch.Tensor:
        return queue.index_select(0, self.position % queue.shape[0])[0]

    def _store(self, queue: torch.Tensor, x: torch.Tensor) -> None:
        queue.index_copy_(0, self.position % queue.shape[0], x[None])

    def _advance(self) -> None:
        self.position += 1

    def generate(self, n: int) -> torch.Tensor:
        if self.graph is None:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture, as CUDA graphs ask
                super().generate(self.STEPS)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = super().generate(self.STEPS)
        for _ in range(-(-n // self.STEPS)):
            self.graph.replay()
        return self.out


def make(model: WaveNet, batch: int, variant: str) -> Engine:
    """A backend name, triton[-bf16]:spread (streams spread over the SMs), or a Triton layout from --triton-sweep:
    triton[-bf16]:STREAMS_PER_PROGRAM:WARPS."""
    if variant in ("plain", "plain-graph"):
        PlainCachedStep(model, batch).check()
        return PlainGraphStep(model, batch) if variant == "plain-graph" else PlainCachedStep(model, batch)
    if ":" not in variant:
        return make_engine(model, batch, variant, temperature=1.0, seed=0)
    from wavenet.generation.triton_kernel import TritonEngine

    name, *layout = variant.split(":")
    dtype = torch.bfloat16 if name == "triton-bf16" else torch.float32
    if layout == ["spread"]:
        sms = torch.cuda.get_device_properties(next(model.parameters()).device).multi_processor_count
        return TritonEngine(model, batch, weight_dtype=dtype, sm_count=sms)
    block, warps = layout
    return TritonEngine(model, batch, weight_dtype=dtype, block_streams=int(block), num_warps=int(warps))


@torch.inference_mode()
def samples_per_second(model: WaveNet, variant: str, batch: int, budget: float) -> float:
    """Aggregate samples/s of one variant in steady state."""
    device = next(model.parameters()).device
    engine = make(model, batch, variant)
    if not variant.startswith("plain"):  # the plain reference starts from silence: a step costs the same either way
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
    parser.add_argument("--threads", nargs="+", type=int, default=None, help="CPU: torch thread counts to time")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument(
        "--triton-sweep", action="store_true", help="also time Triton layouts: streams per program x warps"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batches = args.batches or ([1, 16, 256] if cuda else [1, 16])
    backends = args.backends or (
        [
            *("naive", "plain", "plain-graph", "cached", "graph", "triton", "triton-bf16"),
            *("triton:spread", "triton-bf16:spread", "persistent", "persistent-bf16"),
        ]
        if cuda
        else ["naive", "plain", "cached", "cpu"]
    )
    torch.manual_seed(0)
    if args.checkpoint:
        models = {Path(args.checkpoint).name: model_from_checkpoint(load_checkpoint(args.checkpoint, device), device)}
    else:
        names = args.models or (["base20", "base"] if cuda else ["tiny", "base"])
        models = {name: WaveNet(model_preset(name)).to(device) for name in names}
    device_name = torch.cuda.get_device_name(device) if cuda else f"cpu, {os.cpu_count()} cores"
    rows = []

    def save(more: list[dict]) -> None:
        if args.json:
            write_record(args.json, device_name, rows=rows + more)

    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        where = (
            torch.cuda.get_device_name(device)
            if cuda
            else f"cpu ({platform.processor() or 'x86_64'}), {threads} threads"
        )
        print(f"{where}, torch {torch.__version__}; weights fp32 unless the backend says bf16")
        rows += table(models, batches, backends, args, threads, save)


def table(models: dict, batches: list[int], backends: list[str], args, threads: int, save) -> list[dict]:
    """Time every variant of every model and batch; print the table; its rows as dicts, given to save(rows) after
    each one, so that a run stopped at a time limit keeps what it measured."""
    header = (
        f"{'model':<8} {'layers':>6} {'batch':>5} {'backend':<17} {'per stream/s':>13} {'aggregate/s':>12} "
        f"{'x real time':>11} {'vs naive':>9} {'vs cached':>9} {'vs plain':>9} {'vs plain-graph':>14}"
    )
    print(header)
    print("-" * len(header))
    rows, rates = [], {}  # rates[(model, batch)][backend]: the references of the ratio columns
    last = [b for b in backends if b.startswith("persistent")]  # a fault there can leave the GPU unusable
    for group in ([b for b in backends if b not in last], last):
        for name, model in models.items():
            model.eval()
            for batch in batches:
                variants = list(group)
                if args.triton_sweep and group is not last:
                    variants += [
                        f"{kernel}:{block}:{warps}"
                        for kernel in ("triton", "triton-bf16")
                        for block in (1, 16, 32, 64)
                        if block <= max(16, batch)
                        for warps in (4, 8, 16)
                    ]
                for backend in variants:
                    row = time_row(name, model, batch, backend, rates.setdefault((name, batch), {}), args, threads)
                    if row:
                        rows.append(row)
                        save(rows)
    return rows


def time_row(name: str, model: WaveNet, batch: int, backend: str, rates: dict, args, threads: int) -> dict | None:
    """One backend at one batch: its printed row and its dict; None where the row is skipped."""
    cfg = model.cfg
    if backend == "naive" and len(cfg.dilations) > 20 and batch > 16:
        return None  # minutes per row, and nothing to learn from it
    if backend.endswith(":spread") and batch < 32:
        return None  # one stream per program already
    try:
        rates[backend] = rate = samples_per_second(model, backend, batch, args.seconds)
    except Exception as err:  # one backend failing is a result, not the end of the run
        print(f"{name:<8} {len(cfg.dilations):>6} {batch:>5} {backend:<17} failed: {err}", flush=True)
        return {"model": name, "batch": batch, "backend": backend, "error": str(err)[:500]}
    refs = {"naive": 9, "cached": 9, "plain": 9, "plain-graph": 14}
    ratios = [f"{rate / rates[ref]:>{w - 1}.1f}x" if ref in rates else f"{'-':>{w}}" for ref, w in refs.items()]
    print(
        f"{name:<8} {len(cfg.dilations):>6} {batch:>5} {backend:<17} {rate / batch:>13,.1f} {rate:>12,.0f} "
        f"{rate / batch / cfg.sample_rate:>11.3f} {' '.join(ratios)}",
        flush=True,
    )
    return {
        "model": name,
        "layers": len(cfg.dilations),
        "batch": batch,
        "backend": backend,
        "threads": threads,
        "aggregate_samples_per_s": round(rate, 1),
        "real_time_factor_per_stream": round(rate / batch / cfg.sample_rate, 4),
    }


if __name__ == "__main__":
    main()
