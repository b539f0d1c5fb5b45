"""The `persistent` backend: every layer's weights stay in shared memory for a whole launch, and the layers are
spread over SMs that hand each sample's activations to one another (persistent.cu; nv-wavenet's persistent
multi-block design, written anew).

A pipeline of blocks runs up to 8 streams: `layer_blocks` blocks of `layers_per_block` layers each, then
`head_blocks` blocks that split the head's hidden units; the first head block also samples. As many pipelines run
at once as fit on the GPU (a cooperative launch: all resident, or it fails); a larger batch runs in several
launches of that many streams. Channel counts are zero-padded to powers of two (at least 32); padded classes get
a logit of -1e30 and are never drawn. bf16 weights halve the bytes and fit more layers per block (fewer hand-offs).

`plan` and `pack` are plain PyTorch on any device, and the kernel compiles without a GPU (NVRTC): the tests check
the plan, the packing and the compiled kernel's resources on CPU; running it needs a CUDA GPU (sm_80 or newer).
"""

import ctypes
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from wavenet.errors import UserError
from wavenet.generation.engine import CachedEngine, KernelEngine, pad, pad_halves
from wavenet.generation.nvrtc import Compiled, CudaKernel, compile_cuda
from wavenet.model import WaveNet, WaveNetConfig

SOURCE = Path(__file__).with_name("persistent.cu")
KERNEL = "wavenet_persistent"
THREADS = 256
MAX_STREAMS_PER_PIPELINE = THREADS // 32  # the sampler gives each stream one warp
SHARED_LIMIT = 227 * 1024  # shared memory one block may opt into on sm_90 (H100, H200), static included
RESERVED_SHARED = 1024 + 256  # per block: the system's 1 KB (sm_80+) and the kernel's own static shared memory
FLAG_STRIDE = 32  # as in persistent.cu: one 128-byte line per flag
PHASES = 8  # as in persistent.cu: the phases a PROFILE build times, then its clocks at start and end
PROFILE_SLOTS = PHASES + 4


def padded(n: int) -> int:
    """Channel counts inside the kernel: a power of two, at least a warp."""
    return max(32, 1 << (n - 1).bit_length())


def _align16(n: int) -> int:
    return -(-n // 16) * 16


@dataclass(frozen=True)
class Plan:
    """How one model and batch map onto the kernel: padded sizes, blocks, and shared memory per block."""

    R: int
    G: int
    S: int
    C: int
    layers: int
    streams_per_pipeline: int
    layers_per_block: int
    layer_blocks: int
    head_blocks: int
    bf16: bool
    layer_bytes: int  # one layer's packed weights and biases
    head_bytes: int  # one head block's
    act_floats: int  # activations and scratch after the weights
    shared_bytes: int  # dynamic shared memory per block

    @property
    def blocks_per_pipeline(self) -> int:
        return self.layer_blocks + self.head_blocks

    @property
    def hidden_per_head_block(self) -> int:
        return self.S // self.head_blocks

    def layer_range(self, block: int) -> range:
        """The layers of layer block `block`."""
        start = block * self.layers_per_block
        return range(start, min(self.layers, start + self.layers_per_block))

    def defines(self, profile: bool = False) -> tuple[tuple[str, int], ...]:
        """The kernel's compile-time sizes (-D options), the size of its Params as the host lays it out, and whether
        it times its phases."""
        names = dict(R=self.R, G=self.G, S=self.S, C=self.C, NB=self.streams_per_pipeline, LPB=self.layers_per_block)
        names.update(NL=self.layer_blocks, H=self.head_blocks, THREADS=THREADS, WEIGHT_BF16=int(self.bf16))
        names.update(LAYER_BYTES=self.layer_bytes, HEAD_BYTES=self.head_bytes, ACT_FLOATS=self.act_floats)
        names.update(PARAMS_BYTES=ctypes.sizeof(Params), PROFILE=int(profile))
        return tuple(names.items())


def plan(
    cfg: WaveNetConfig,
    batch_size: int,
    weight_dtype: torch.dtype,
    shared_limit: int = SHARED_LIMIT,
    layers_per_block: int | None = None,
    head_blocks: int | None = None,
) -> Plan:
    """The layout with the fewest blocks per pipeline (fewest hand-offs per sample) that fits `shared_limit`, or the
    one asked for (layers_per_block, head_blocks) if it fits."""
    R, G, S, C = (padded(n) for n in (cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.classes))
    L, NB = len(cfg.dilations), min(MAX_STREAMS_PER_PIPELINE, batch_size)
    if weight_dtype not in (torch.float32, torch.bfloat16):
        raise UserError(f"the persistent backend keeps weights in float32 or bfloat16, not {weight_dtype}")
    bf16 = weight_dtype == torch.bfloat16
    w = 2 if bf16 else 4
    layer_bytes = _align16(w * (2 * R * 2 * G + G * R + G * S) + 4 * (2 * G + R))
    best = None
    for per_block in [layers_per_block] if layers_per_block else range(1, L + 1):
        layer_blocks = math.ceil(L / per_block)
        if not layers_per_block:
            per_block = math.ceil(L / layer_blocks)  # the same block count with the layers spread evenly
        for heads in [head_blocks] if head_blocks else (1, 2, 4, 8, 16):
            hidden = S // heads
            head_bytes = _align16(w * (S * hidden + hidden * C) + 4 * hidden)
            layer_act = 2 * NB * R + per_block * NB * 3 * G + NB * S + THREADS * NB
            act = max(layer_act, NB * (S + hidden + C + THREADS + 2))
            shared = max(per_block * layer_bytes, head_bytes) + 4 * act
            if hidden < 32 or S % heads or shared + RESERVED_SHARED > shared_limit:
                continue
            key = (layer_blocks + heads, layer_blocks)
            if best is None or key < best[0]:
                best = key, Plan(R, G, S, C, L, NB, per_block, layer_blocks, heads, bf16, layer_bytes, head_bytes,
                                 act, shared)  # fmt: skip
            break  # more head blocks only add hand-offs
    if best is None:
        raise UserError(
            f"generation.backend=persistent: one layer of this model ({layer_bytes / 1024:.0f} KB) does not fit a "
            f"block's shared memory ({shared_limit / 1024:.0f} KB); use persistent-bf16, triton or graph."
        )
    return best[1]


@cache
def compiled(p: Plan, capability: int, profile: bool = False) -> Compiled:
    """The kernel for this plan, compiled for sm_<capability> (no GPU needed); with `profile`, the build that times
    its phases."""
    return compile_cuda(SOURCE.read_text(), SOURCE.name, p.defines(profile), capability)


def _blob(parts: list[torch.Tensor], dtype: torch.dtype, floats: list[torch.Tensor], size: int) -> torch.Tensor:
    """Matrices in `dtype`, then float32 vectors, as bytes, zero-padded to `size`."""
    pieces = [p.to(dtype).contiguous().flatten().view(torch.uint8) for p in parts]
    pieces += [f.float().contiguous().flatten().view(torch.uint8) for f in floats]
    data = torch.cat(pieces)
    return torch.cat([data, data.new_zeros(size - data.numel())])


def pack(engine: CachedEngine, p: Plan) -> dict[str, torch.Tensor]:
    """The cached engine's step matrices in the kernel's layout (persistent.cu, Params): per-layer blobs, per-head-
    block blobs, and the padded embedding and biases."""
    dtype = torch.bfloat16 if p.bf16 else torch.float32
    R, G, S, C = p.R, p.G, p.S, p.C
    layers = []
    for i in range(p.layers):
        dilated_b = pad_halves(engine.dilated_b[i][None, :], 1, G)[0]
        matrices = [pad_halves(engine.past_w[i], R, G), pad_halves(engine.now_w[i], R, G)]
        matrices += [pad(engine.residual_w[i], (G, R)), pad(engine.skip_w[i], (G, S))]
        layers.append(_blob(matrices, dtype, [dilated_b, pad(engine.residual_b[i], (R,))], p.layer_bytes))
    w1, w2 = pad(engine.head_w1, (S, S)), pad(engine.head_w2, (S, C))
    b1, k = pad(engine.head_b1, (S,)), p.hidden_per_head_block
    heads = [
        _blob([w1[:, h * k : (h + 1) * k], w2[h * k : (h + 1) * k]], dtype, [b1[h * k : (h + 1) * k]], p.head_bytes)
        for h in range(p.head_blocks)
    ]
    return dict(
        layers=torch.stack(layers),
        heads=torch.stack(heads),
        embed=pad(engine.embed_w, (engine.classes, R)).float().contiguous(),
        skip_b=pad(engine.skip_b, (S,)).float().contiguous(),
        head_b2=pad(engine.head_b2, (C,), fill=-1e30).float().contiguous(),
    )


def launch_groups(batch_size: int, streams_per_launch: int) -> list[tuple[int, int]]:
    """(first stream, streams) of each launch: a batch larger than what fits on the GPU at once runs in turns."""
    return [(first, min(streams_per_launch, batch_size - first)) for first in range(0, batch_size, streams_per_launch)]


class Params(ctypes.Structure):
    """persistent.cu's Params, field for field."""

    _fields_ = [
        (name, ctypes.c_void_p)
        for name in (
            "pending out forced logits keys ring ring_rows dilations embed layers heads skip_b head_b2 "
            "x_handoff skip_handoff logit_handoff code_handoff flags error profile"
        ).split()
    ] + [(name, ctypes.c_longlong) for name in "batch first_stream streams n t0 num_layers sample".split()]
    _fields_ += [("index0", ctypes.c_uint), ("temperature", ctypes.c_float)]


class PersistentEngine(KernelEngine):
    """The cached engine's state and priming, with the steps run by the persistent kernel."""

    name = "persistent"

    def __init__(
        self,
        model: WaveNet,
        batch_size: int,
        temperature: float = 1.0,
        seed: int = 0,
        first_stream: int = 0,
        weight_dtype: torch.dtype = torch.float32,
        layers_per_block: int | None = None,
        head_blocks: int | None = None,
        profile: bool = False,
    ):
        """`layers_per_block` and `head_blocks` ask for a layout (see `plan`); by default the one with the fewest
        blocks. With `profile`, the kernel times its phases: after each launch, `self.profile` holds them per
        block (see persistent.cu's Profile)."""
        self.profiling = profile
        super().__init__(model, batch_size, temperature, seed, first_stream, padded(model.cfg.residual_channels))
        self.name = "persistent-bf16" if weight_dtype == torch.bfloat16 else "persistent"
        self.plan = plan(
            model.cfg, batch_size, weight_dtype, layers_per_block=layers_per_block, head_blocks=head_blocks
        )
        self.kernel_classes = self.plan.C
        self.kernel, sms = self._load_kernel()
        pipelines = sms * self.kernel.resident_blocks_per_sm() // self.plan.blocks_per_pipeline
        if pipelines < 1:
            raise UserError(f"generation.backend={self.name}: one pipeline needs {self.plan.blocks_per_pipeline} "
                            f"blocks, more than this GPU holds at once; use triton or graph.")  # fmt: skip
        self.groups = launch_groups(batch_size, pipelines * self.plan.streams_per_pipeline)
        self.weights = pack(self, self.plan)
        self._workspace(min(pipelines, math.ceil(batch_size / self.plan.streams_per_pipeline)))

    def _load_kernel(self) -> tuple[CudaKernel, int]:
        """The kernel for this plan, compiled for this engine's GPU and loaded there, and the GPU's SM count."""
        if self.device.type != "cuda":
            raise UserError(
                f"generation.backend={self.name} needs a CUDA GPU; use cpu, cached or auto on this machine."
            )
        major, minor = torch.cuda.get_device_capability(self.device)
        if major < 8:
            raise UserError(f"generation.backend={self.name} needs a GPU of compute capability 8.0 or newer")
        program = compiled(self.plan, 10 * major + minor, self.profiling)
        kernel = CudaKernel(program, KERNEL, THREADS, self.plan.shared_bytes, self.device)
        return kernel, torch.cuda.get_device_properties(self.device).multi_processor_count

    def _workspace(self, pipelines: int) -> None:
        p, NB = self.plan, self.plan.streams_per_pipeline
        f32 = dict(device=self.device, dtype=torch.float32)
        self.x_handoff = torch.zeros(pipelines, p.layer_blocks, NB, p.R, **f32)
        self.skip_handoff = torch.zeros(pipelines, p.layer_blocks, NB, p.S, **f32)
        self.logit_handoff = torch.zeros(pipelines, p.head_blocks, NB, p.C, **f32)
        self.code_handoff = torch.zeros(pipelines, NB, dtype=torch.int64, device=self.device)
        flags = (2 * p.layer_blocks + p.head_blocks + 1) * FLAG_STRIDE
        self.flags = torch.zeros(pipelines, flags, dtype=torch.int32, device=self.device)
        self.error = torch.zeros(1, dtype=torch.int32, device=self.device)
        blocks = pipelines * p.blocks_per_pipeline
        self.profile = torch.zeros(blocks, PROFILE_SLOTS, dtype=torch.int64, device=self.device)

    def _launch(self, n: int, out: torch.Tensor, forced: torch.Tensor | None, logits: torch.Tensor | None) -> None:
        p = self.plan
        self.error.zero_()
        for first, streams in self.groups:
            self.flags.zero_()
            params = Params(
                pending=self.pending.data_ptr(),
                out=out.data_ptr(),
                forced=forced.data_ptr() if forced is not None else 0,
                logits=logits.data_ptr() if logits is not None else 0,
                keys=self.keys.data_ptr(),
                ring=self.ring.data_ptr(),
                ring_rows=self.ring_rows.data_ptr(),
                dilations=self.dilations_device.data_ptr(),
                **{name: tensor.data_ptr() for name, tensor in self.weights.items()},
                x_handoff=self.x_handoff.data_ptr(),
                skip_handoff=self.skip_handoff.data_ptr(),
                logit_handoff=self.logit_handoff.data_ptr(),
                code_handoff=self.code_handoff.data_ptr(),
                flags=self.flags.data_ptr(),
                error=self.error.data_ptr(),
                profile=self.profile.data_ptr(),
                batch=self.batch_size,
                first_stream=first,
                streams=streams,
                n=n,
                t0=self.t % self.period,
                num_layers=p.layers,
                sample=int(self.temperature > 0),
                index0=self.index % 2**32,
                temperature=float(self.temperature) or 1.0,
            )
            pipelines = math.ceil(streams / p.streams_per_pipeline)
            self.kernel.launch(pipelines * p.blocks_per_pipeline, params)
        if self.error.item():  # this waits for the kernel: progress counts samples that are done
            raise RuntimeError(
                f"generation.backend={self.name}: a block of the persistent kernel waited over 2 s for another, and "
                "the launch was abandoned; use triton or graph, and report this with the GPU's name."
            )
        self.t += n
