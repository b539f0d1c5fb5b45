"""The fused Triton backend: one kernel launch runs many samples of every stream, sampling included.

Each program owns STREAMS streams (in a tile of BLOCK_B rows, the rest masked) and loops over the samples, and
within a sample over the layers, holding the sample's activations in registers: embedding, dilated conv (two
matmuls against the rings), gated unit, residual and skip, the head, and Gumbel-max sampling, with nothing between
them but the ring buffers in device memory.
The weights are read from device memory (L2-resident: 5 MB in fp32, 2.5 MB in bf16 for `base`) each sample.
Channel counts are zero-padded to powers of two (at least 16), so any configuration runs; padded classes get a
logit of -1e30 and are never drawn.

On a machine without CUDA, set TRITON_INTERPRET=1 before this module is imported to run the kernel (slowly) on
CPU tensors: that is how the tests check it in CI.
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from wavenet.errors import UserError
from wavenet.generation.engine import KernelEngine, pad, pad_halves
from wavenet.generation.sampling import MIX_MULTIPLIERS
from wavenet.model import WaveNet, WaveNetConfig


@triton.jit
def _mix32(x):
    """The same hash as sampling.mix32, on uint32."""
    x = x ^ (x >> 16)
    x = x * MIX_A
    x = x ^ (x >> 15)
    x = x * MIX_B
    return x ^ (x >> 15)


MIX_A = tl.constexpr(MIX_MULTIPLIERS[0])
MIX_B = tl.constexpr(MIX_MULTIPLIERS[1])


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _matmul(a, w, USE_DOT: tl.constexpr):
    """(M, K) float32 activations @ (K, N) weights -> (M, N) float32. Only the weights are rounded (to bf16 where
    they are stored so): the activations go into bf16 tensor-core products as two bf16 parts, high and low, whose
    sum holds them to about 2**-17, against 2**-9 for one part."""
    if USE_DOT:
        if w.dtype == tl.float32:
            out = tl.dot(a, w, input_precision="ieee")
        else:
            high = a.to(w.dtype)
            out = tl.dot(high, w) + tl.dot((a - high.to(tl.float32)).to(w.dtype), w)
    else:  # M = 1: a broadcast product and a sum, no tensor cores
        out = tl.sum(a[:, :, None] * w.to(tl.float32)[None, :, :], axis=1)
    return out


@triton.jit(do_not_specialize=["n", "t0", "index0"])  # they change every launch: one compiled kernel for all
def _wavenet_steps(
    pending_ptr,  # (B,) int64: the code to feed first; on return, the last code fed next time
    out_ptr,  # (B, n) int64: the sampled codes
    forced_ptr,  # (B, n) int64: teacher codes (FORCED only)
    logits_ptr,  # (B, n, C) float32: the logits of every step (FORCED only)
    keys_ptr,  # (B,) int64: per-stream noise keys (sampling.stream_keys)
    ring_ptr,  # (sum of dilations, B, R) float32: every layer's ring
    ring_rows_ptr,  # (L,) int32: first ring row of each layer
    dilations_ptr,  # (L,) int32
    embed_ptr,  # (C, R) float32
    past_w_ptr,  # (L, R, 2G): the dilated conv's tap at t - d; filter columns [0, G), gate columns [G, 2G)
    now_w_ptr,  # (L, R, 2G): its tap at t
    dilated_b_ptr,  # (L, 2G) float32
    residual_w_ptr,  # (L, G, R)
    residual_b_ptr,  # (L, R) float32
    skip_w_ptr,  # (L, G, S)
    skip_b_ptr,  # (S,) float32: all layers' skip biases, summed
    head_w1_ptr,  # (S, S)
    head_b1_ptr,  # (S,) float32
    head_w2_ptr,  # (S, C)
    head_b2_ptr,  # (C,) float32
    B,
    n,
    t0,  # the pending code's position, modulo the dilations' common period
    index0,  # the noise index of the first sample, modulo 2**32, as a signed 32-bit number (its bits are the index's)
    temperature,
    L,
    R: tl.constexpr,
    G: tl.constexpr,
    S: tl.constexpr,
    C: tl.constexpr,
    BLOCK_B: tl.constexpr,  # rows of the program's tile: 16 or more on the tl.dot path
    STREAMS: tl.constexpr,  # live streams per program, at most BLOCK_B
    HEAD_CHUNK: tl.constexpr,
    USE_DOT: tl.constexpr,
    SAMPLE: tl.constexpr,  # temperature > 0 (else greedy)
    FORCED: tl.constexpr,  # teacher forcing: feed forced codes, write logits
):
    b = tl.program_id(0) * STREAMS + tl.arange(0, BLOCK_B)
    live = (tl.arange(0, BLOCK_B) < STREAMS) & (b < B)
    r, g, s_, c, hc = tl.arange(0, R), tl.arange(0, G), tl.arange(0, S), tl.arange(0, C), tl.arange(0, HEAD_CHUNK)
    code = tl.load(pending_ptr + b, mask=live, other=0)
    keys = tl.load(keys_ptr + b, mask=live, other=0).to(tl.uint32)
    for step in range(n):
        t = t0 + step
        x = tl.load(embed_ptr + code[:, None] * R + r[None, :])  # (BLOCK_B, R): the residual stream
        skip = tl.zeros((BLOCK_B, S), dtype=tl.float32)
        for layer in range(L):
            row = tl.load(ring_rows_ptr + layer) + t % tl.load(dilations_ptr + layer)
            ring = ring_ptr + (row * B + b[:, None]) * R + r[None, :]
            past = tl.load(ring, mask=live[:, None], other=0.0)  # this layer's input at t - d
            w = layer * R * 2 * G + r[:, None] * 2 * G + g[None, :]
            filt = _matmul(past, tl.load(past_w_ptr + w), USE_DOT) + _matmul(x, tl.load(now_w_ptr + w), USE_DOT)
            gate = _matmul(past, tl.load(past_w_ptr + w + G), USE_DOT) + _matmul(x, tl.load(now_w_ptr + w + G), USE_DOT)
            filt += tl.load(dilated_b_ptr + layer * 2 * G + g)[None, :]
            gate += tl.load(dilated_b_ptr + layer * 2 * G + G + g)[None, :]
            tl.debug_barrier()  # every thread has read the slot before it is overwritten
            tl.store(ring, x, mask=live[:, None])
            z = (2.0 * _sigmoid(2.0 * filt) - 1.0) * _sigmoid(gate)  # tanh(filt) * sigmoid(gate), (BLOCK_B, G)
            skip += _matmul(z, tl.load(skip_w_ptr + layer * G * S + g[:, None] * S + s_[None, :]), USE_DOT)
            residual = _matmul(z, tl.load(residual_w_ptr + layer * G * R + g[:, None] * R + r[None, :]), USE_DOT)
            x += residual + tl.load(residual_b_ptr + layer * R + r)[None, :]
        # The head, relu -> 1x1 -> relu -> 1x1, a chunk of hidden channels at a time.
        skip = tl.maximum(skip + tl.load(skip_b_ptr + s_)[None, :], 0.0)
        logits = tl.zeros((BLOCK_B, C), dtype=tl.float32) + tl.load(head_b2_ptr + c)[None, :]
        for chunk in range(S // HEAD_CHUNK):
            k = chunk * HEAD_CHUNK + hc
            hidden = _matmul(skip, tl.load(head_w1_ptr + s_[:, None] * S + k[None, :]), USE_DOT)
            hidden = tl.maximum(hidden + tl.load(head_b1_ptr + k)[None, :], 0.0)
            logits += _matmul(hidden, tl.load(head_w2_ptr + k[:, None] * C + c[None, :]), USE_DOT)
        if FORCED:
            tl.store(logits_ptr + (b[:, None] * n + step) * C + c[None, :], logits, mask=live[:, None])
            code = tl.load(forced_ptr + b * n + step, mask=live, other=0)
        else:
            if SAMPLE:
                step_keys = _mix32(keys ^ (index0 + step).to(tl.uint32))
                bits = _mix32(step_keys[:, None] ^ c[None, :].to(tl.uint32))
                uniform = ((bits >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # 2**-24
                logits = logits / temperature - tl.log(-tl.log(uniform))
            code = tl.argmax(logits, axis=1).to(tl.int64)
            tl.store(out_ptr + b * n + step, code, mask=live)
    tl.store(pending_ptr + b, code, mask=live)


def padded(n: int) -> int:
    """Channel counts inside the kernel: a power of two, at least 16 (the smallest tl.dot)."""
    return max(16, triton.next_power_of_2(n))


def kernel_layout(
    cfg: WaveNetConfig,
    batch_size: int,
    weight_dtype: torch.dtype,
    block_streams: int | None,
    sm_count: int | None = None,
) -> dict:
    """The kernel's compile-time constants: padded sizes, streams per program, and the matmul path.

    One stream per program below 32 streams (each on its own SM, broadcast-and-sum matmuls); 16 per program
    above (tl.dot). With `sm_count`, a tl.dot program takes only as many streams as spread the batch over that many
    SMs (256 streams on 132 SMs: 2 live rows of its 16, 128 programs), each program reading every weight from L2
    for its few streams: whether that beats 16 programs of 16 is for the GPU bench to say (the `:spread` rows).
    A head chunk of 32 hidden channels on the tl.dot path keeps its shared memory within an H100's 227 KB in fp32,
    and the bf16 products (two per matmul: see _matmul) within 255 registers unspilled.
    """
    block = block_streams or (1 if batch_size < 32 else 16)
    use_dot = block >= 16
    streams = min(block, -(-batch_size // sm_count)) if sm_count and use_dot else block
    S = padded(cfg.skip_channels)
    return dict(
        R=padded(cfg.residual_channels),
        G=padded(cfg.gate_channels),
        S=S,
        C=padded(cfg.classes),
        BLOCK_B=block,
        STREAMS=streams,
        HEAD_CHUNK=min(S, 32 if use_dot else 64),
        USE_DOT=use_dot,
    )


def compile_ahead(layout: dict, weight_dtype: torch.dtype, num_warps: int = 8, capability: int = 90) -> dict:
    """Compile the kernel for a CUDA architecture without a GPU (Triton's own ptxas); return its resource use:
    registers per thread, spilled bytes per thread and shared memory per program. Pointers are taken as 16-byte
    aligned, as Triton assumes for torch's allocations at launch."""
    weights = {torch.float32: "*fp32", torch.bfloat16: "*bf16"}[weight_dtype]
    constants = dict(layout, SAMPLE=True, FORCED=False)
    signature = {}
    for name in _wavenet_steps.arg_names:
        if name in constants:
            signature[name] = "constexpr"
        elif name in ("pending_ptr", "out_ptr", "forced_ptr", "keys_ptr"):
            signature[name] = "*i64"
        elif name in ("ring_rows_ptr", "dilations_ptr"):
            signature[name] = "*i32"
        elif name in ("logits_ptr", "ring_ptr", "embed_ptr") or name.endswith("_b_ptr"):
            signature[name] = "*fp32"
        elif name.endswith("_ptr"):
            signature[name] = weights
        else:
            signature[name] = "fp32" if name == "temperature" else "i32"
    index = {name: i for i, name in enumerate(_wavenet_steps.arg_names)}
    aligned = {(index[name],): [["tt.divisibility", 16]] for name, kind in signature.items() if kind.startswith("*")}
    source = ASTSource(_wavenet_steps, signature, {(index[k],): v for k, v in constants.items()}, aligned)
    kernel = triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        report = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], capture_output=True, text=True).stdout
    usage = {key: int(value) for key, value in re.findall(r"(REG|STACK|LOCAL):(\d+)", report)}
    return dict(
        registers=usage["REG"], spilled_bytes=usage["STACK"] + usage["LOCAL"], shared_bytes=kernel.metadata.shared
    )


class TritonEngine(KernelEngine):
    """The cached engine's state and priming, with the steps run by the fused kernel."""

    name = "triton"

    def __init__(
        self,
        model: WaveNet,
        batch_size: int,
        temperature: float = 1.0,
        seed: int = 0,
        first_stream: int = 0,
        weight_dtype: torch.dtype = torch.float32,
        block_streams: int | None = None,
        num_warps: int = 8,
        sm_count: int | None = None,
    ):
        cfg = model.cfg
        super().__init__(model, batch_size, temperature, seed, first_stream, padded(cfg.residual_channels))
        self.name = "triton-bf16" if weight_dtype == torch.bfloat16 else "triton"
        if self.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise UserError(
                f"generation.backend={self.name} needs a CUDA device (or TRITON_INTERPRET=1, slow, to test it on CPU);"
                " use cached (or auto) on this machine."
            )
        self.layout = kernel_layout(cfg, batch_size, weight_dtype, block_streams, sm_count)
        self.kernel_classes = self.layout["C"]
        self.num_warps = num_warps
        self.weights = self._pack(weight_dtype)

    def _pack(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The step matrices, zero-padded to the kernel's sizes; matrices in `dtype`, biases in float32."""
        R, G, S, C = (self.layout[k] for k in "RGSC")
        L = len(self.dilations)

        def taps(w: list[torch.Tensor]) -> torch.Tensor:  # (R0, 2 G0) per layer -> (L, R, 2G), gate half at G
            return pad_halves(torch.stack(w), R, G).to(dtype).contiguous()

        return dict(
            embed_ptr=pad(self.embed_w, (self.classes, R)).float().contiguous(),
            past_w_ptr=taps(self.past_w),
            now_w_ptr=taps(self.now_w),
            dilated_b_ptr=pad_halves(torch.stack(self.dilated_b), L, G).float(),
            residual_w_ptr=pad(torch.stack(self.residual_w), (L, G, R)).to(dtype).contiguous(),
            residual_b_ptr=pad(torch.stack(self.residual_b), (L, R)).float().contiguous(),
            skip_w_ptr=pad(self.skip_w, (L, G, S)).to(dtype).contiguous(),
            skip_b_ptr=pad(self.skip_b, (S,)).float(),
            head_w1_ptr=pad(self.head_w1, (S, S)).to(dtype).contiguous(),
            head_b1_ptr=pad(self.head_b1, (S,)).float(),
            head_w2_ptr=pad(self.head_w2, (S, C)).to(dtype).contiguous(),
            head_b2_ptr=pad(self.head_b2, (C,), fill=-1e30).float(),
        )

    def _launch(self, n: int, out: torch.Tensor, forced: torch.Tensor | None, logits: torch.Tensor | None) -> None:
        grid = (triton.cdiv(self.batch_size, self.layout["STREAMS"]),)
        _wavenet_steps[grid](
            self.pending,
            out,
            forced if forced is not None else out,
            logits if logits is not None else self.ring,
            self.keys,
            self.ring,
            self.ring_rows,
            self.dilations_device,
            **self.weights,
            B=self.batch_size,
            n=n,
            t0=self.t % self.period,
            index0=(self.index + 2**31) % 2**32 - 2**31,  # always an int32: past 2**31 Triton would recompile for int64
            temperature=float(self.temperature),
            L=len(self.dilations),
            **self.layout,
            SAMPLE=self.temperature > 0,
            FORCED=forced is not None,
            num_warps=self.num_warps,
        )
        self.t += n
