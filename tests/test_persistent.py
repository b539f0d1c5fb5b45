"""The persistent backend (wavenet/generation/persistent.py, persistent.cu).

On CPU: the plan fits the H100/H200's limits, the kernel compiles for sm_90 within its registers and shared memory
with nothing spilled (NVRTC needs no GPU), and the packed weights, read back the way the kernel reads them and run
through the kernel's dataflow (blocks in turn, the skip sum handed from block to block, the head's hidden units
split), give the full forward's logits. And the engine runs whole on CPU with persistent.cu itself compiled for
the CPU (tests/cuda_on_cpu.h: a thread per block, a coroutine per CUDA thread): its logits, its draws, its launches
in turns and its hand-offs, with no GPU; and, built with ThreadSanitizer, that every hand-off is ordered as the
GPU's memory model needs. The `gpu` tests run the kernel on the GPU.
"""

import copy
import functools
import math
from pathlib import Path

import pytest
import torch

from tests.cuda_on_cpu import CpuKernel, compile_on_cpu, sanitized
from tests.test_generation import continued, relative_error, teacher_forced_error
from wavenet.config import model_preset
from wavenet.errors import UserError
from wavenet.generation import make_engine
from wavenet.generation.engine import CachedEngine
from wavenet.generation.persistent import (
    KERNEL,
    RESERVED_SHARED,
    SHARED_LIMIT,
    SOURCE,
    THREADS,
    PersistentEngine,
    Plan,
    compiled,
    launch_groups,
    pack,
    plan,
)
from wavenet.model import WaveNet, WaveNetConfig

# Odd channel counts (everything padded), eight layers in two stacks.
ODD = WaveNetConfig(stacks=2, layers_per_stack=4, residual_channels=10, gate_channels=12, skip_channels=40)
ODD_LAYOUT = dict(layers_per_block=3, head_blocks=2)  # blocks of 3, 3 and 2 layers, a head in halves: 5 a pipeline


def test_base_plans_keep_every_layer_on_chip_in_few_blocks():
    base = model_preset("base")
    fp32, bf16 = plan(base, 1, torch.float32), plan(base, 1, torch.bfloat16)
    assert (fp32.layer_blocks, fp32.head_blocks) == (30, 4)  # 144 KB of weights per layer: one layer per SM
    assert (bf16.layer_blocks, bf16.head_blocks) == (10, 2)  # half the bytes: three layers per SM
    for p in (fp32, bf16, plan(base, 256, torch.float32), plan(base, 256, torch.bfloat16)):
        assert p.shared_bytes + RESERVED_SHARED <= SHARED_LIMIT
        assert [i for block in range(p.layer_blocks) for i in p.layer_range(block)] == list(range(30))
        assert p.streams_per_pipeline * 32 <= THREADS  # a warp per stream samples


def test_a_layer_too_large_for_shared_memory_is_refused_with_what_to_use():
    huge = WaveNetConfig(residual_channels=256, gate_channels=256, skip_channels=512)
    with pytest.raises(Exception, match="persistent-bf16, triton or graph"):
        plan(huge, 1, torch.float32)


@pytest.mark.parametrize("weights", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("model", ["base", "odd"])
def test_kernel_compiles_for_sm90_without_spills_within_the_block_limits(model, batch, weights):
    cfg = model_preset("base") if model == "base" else ODD
    p = plan(cfg, batch, weights)
    kernel = compiled(p, 90)
    assert kernel.cubin[:4] == b"\x7fELF"
    assert 0 < kernel.registers <= 255 and kernel.registers * THREADS <= 65536, kernel.log
    assert kernel.spilled_bytes == 0 and kernel.stack_bytes == 0, kernel.log
    assert kernel.static_shared_bytes + 1024 <= RESERVED_SHARED  # what the plan keeps free besides its own


@pytest.mark.parametrize("weights", [torch.float32, torch.bfloat16])
def test_the_profiling_build_compiles_for_sm90_without_spills(weights):
    kernel = compiled(plan(model_preset("base"), 16, weights), 90, profile=True)
    assert 0 < kernel.registers <= 255 and kernel.spilled_bytes == 0 and kernel.stack_bytes == 0, kernel.log


def test_without_a_gpu_the_backend_says_what_to_use():
    with pytest.raises(UserError, match="generation.backend=persistent needs a CUDA GPU; use cpu, cached or auto"):
        make_engine(WaveNet(ODD), 1, "persistent")


def test_launch_groups_cover_every_stream_once():
    for batch, per_launch in [(1, 8), (16, 24), (256, 24), (24, 24)]:
        groups = launch_groups(batch, per_launch)
        assert [s for first, n in groups for s in range(first, first + n)] == list(range(batch))
        assert all(0 < n <= per_launch for _, n in groups)


def _read(blob: torch.Tensor, offset: int, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    size = math.prod(shape) * torch.finfo(dtype).bits // 8
    return blob[offset : offset + size].view(dtype).float().reshape(shape), offset + size


def unpack_layer(blob: torch.Tensor, p: Plan, dtype: torch.dtype) -> list[torch.Tensor]:
    """persistent.cu's LayerWeights: past_w, now_w (R, 2G), res_w (G, R), skip_w (G, S), then dil_b, res_b."""
    out, offset = [], 0
    for shape, kind in [((p.R, 2 * p.G), dtype), ((p.R, 2 * p.G), dtype), ((p.G, p.R), dtype), ((p.G, p.S), dtype)]:
        part, offset = _read(blob, offset, shape, kind)
        out.append(part)
    for shape in [(2 * p.G,), (p.R,)]:
        part, offset = _read(blob, offset, shape, torch.float32)
        out.append(part)
    return out


def unpack_head(blob: torch.Tensor, p: Plan, dtype: torch.dtype) -> list[torch.Tensor]:
    k = p.hidden_per_head_block
    w1, offset = _read(blob, 0, (p.S, k), dtype)
    w2, offset = _read(blob, offset, (k, p.C), dtype)
    b1, _ = _read(blob, offset, (k,), torch.float32)
    return [w1, w2, b1]


def run_like_the_kernel(model: WaveNet, p: Plan, weights: dict, pending: torch.Tensor, forced: torch.Tensor, rings, t0):
    """The kernel's dataflow on the packed weights (one pipeline): returns the logits of every step, (B, n, C)."""
    dtype = torch.bfloat16 if p.bf16 else torch.float32
    layers = [unpack_layer(blob, p, dtype) for blob in weights["layers"]]
    heads = [unpack_head(blob, p, dtype) for blob in weights["heads"]]
    G, dilations, code, logits = p.G, model.cfg.dilations, pending, []
    for s in range(forced.shape[1]):
        x, skip = weights["embed"][code], 0
        for block in range(p.layer_blocks):  # one block after another, the skip sum handed on with x
            own = 0
            for i in p.layer_range(block):
                past_w, now_w, res_w, skip_w, dil_b, res_b = layers[i]
                slot = (t0 + s) % dilations[i]
                h = dil_b + rings[i][slot] @ past_w + x @ now_w
                rings[i][slot] = x
                z = torch.tanh(h[:, :G]) * torch.sigmoid(h[:, G:])
                if i < p.layers - 1:
                    x = x + res_b + z @ res_w
                own = own + z @ skip_w
            skip = skip + own
        hidden = torch.relu(skip + weights["skip_b"])
        step = sum(torch.relu(b1 + hidden @ w1) @ w2 for w1, w2, b1 in heads) + weights["head_b2"]
        logits.append(step[:, : model.cfg.classes])
        code = forced[:, s]
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("weights, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_weights_in_the_kernels_dataflow_give_the_full_forward(weights, tolerance):
    torch.manual_seed(0)
    model = WaveNet(ODD).eval()
    p = plan(ODD, 3, weights, **ODD_LAYOUT)
    assert [len(p.layer_range(block)) for block in range(p.layer_blocks)] == [3, 3, 2]
    packed = pack(CachedEngine(model, 3), p)
    codes = torch.randint(0, 256, (3, model.receptive_field + 40))
    rings = [torch.zeros(d, 3, p.R) for d in ODD.dilations]
    with torch.no_grad():
        full = copy.deepcopy(model).double()(codes)[:, :, :-1].transpose(1, 2)  # predictions of codes[1:]
        first = run_like_the_kernel(model, p, packed, codes[:, 0], codes[:, 1:30], rings, t0=0)
        rest = run_like_the_kernel(model, p, packed, codes[:, 29], codes[:, 30:], rings, t0=29 % 8)  # a 2nd launch
    assert relative_error(torch.cat([first, rest], 1).double(), full) < tolerance


class PersistentOnCpu(PersistentEngine):
    """The persistent engine with persistent.cu compiled for the CPU (tests/cuda_on_cpu.h), on `sms` "SMs" of a
    block each: so every launch holds sms // blocks-per-pipeline pipelines, and larger batches run in turns."""

    build_dir: Path

    def __init__(self, *args, sms: int = 10, **options):
        self.sms = sms
        super().__init__(*args, **options)

    def _load_kernel(self) -> tuple[CpuKernel, int]:
        defines = (*self.plan.defines(self.profiling), ("WAIT_LIMIT_NS", 60 * 10**9))  # blocks share 2 cores here
        library = compile_on_cpu(SOURCE, KERNEL, "Params", defines, self.build_dir)
        return CpuKernel(library, KERNEL, THREADS, self.plan.shared_bytes), self.sms


@pytest.fixture(scope="module")
def engine_on_cpu(tmp_path_factory) -> type[PersistentOnCpu]:
    """PersistentOnCpu, building its kernels in this module's temporary folder."""
    PersistentOnCpu.build_dir = tmp_path_factory.mktemp("cuda-on-cpu")
    return PersistentOnCpu


@pytest.fixture(scope="module")
def on_cpu(engine_on_cpu):
    """make(batch, cfg=ODD, **options): a PersistentOnCpu engine of a fresh model (seed 0). ODD is laid out as
    ODD_LAYOUT unless the options say otherwise; another model gets the plan it gets on the GPU."""

    def make(batch: int, cfg: WaveNetConfig = ODD, **options) -> PersistentOnCpu:
        torch.manual_seed(0)
        if cfg is ODD:
            options = ODD_LAYOUT | options
        return engine_on_cpu(WaveNet(cfg).eval(), batch, **options)

    return make


def _forced_error(engine: PersistentOnCpu, steps: int, first_call: int) -> float:
    """Prime with a receptive field of random codes, feed `steps` more in two calls (the first of `first_call`):
    the logits' relative error to the float64 full forward's."""
    field = engine.model.receptive_field
    codes = torch.randint(0, 256, (engine.batch_size, field + steps))
    with torch.no_grad():
        full = copy.deepcopy(engine.model).double()(codes)[:, :, field - 1 : -1].transpose(1, 2)
    engine.prime(codes[:, :field])
    calls = [codes[:, field : field + first_call], codes[:, field + first_call :]]
    return relative_error(torch.cat([engine.teacher_forced(c) for c in calls], 1).double(), full)


@pytest.mark.parametrize("weights, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_the_kernel_on_the_cpu_gives_the_full_forwards_logits(on_cpu, weights, tolerance):
    """Past the receptive field (31) and on through a second launch."""
    assert _forced_error(on_cpu(3, weight_dtype=weights), steps=60, first_call=25) < tolerance


@pytest.mark.parametrize("weights, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("batch", [1, pytest.param(16, marks=pytest.mark.slow)])
def test_the_kernel_on_the_cpu_runs_base_in_the_gpus_layouts(on_cpu, weights, tolerance, batch):
    """Base compiled with the sizes it gets on an H100 (fp32: 30 layer blocks and 4 head blocks; bf16: 3 layers a
    block), on 40 "SMs": fp32 at batch 16 runs in two launches of 8 streams. 20 steps after a receptive field."""
    engine = on_cpu(batch, model_preset("base"), sms=40, weight_dtype=weights)
    assert _forced_error(engine, steps=20, first_call=12) < tolerance


def _draws(engine: CachedEngine, prime: torch.Tensor, lengths: list[int], index: int = 0) -> torch.Tensor:
    """Prime, set the noise counter to `index`, then generate in calls of `lengths`."""
    engine.prime(prime)
    engine.index = index
    return torch.cat([engine.generate(n) for n in lengths], dim=1)


@pytest.mark.parametrize(
    "batch, sms, groups",
    [
        (1, 10, [(0, 1)]),
        (9, 5, [(0, 8), (8, 1)]),  # one pipeline a launch: two launches, the second of one stream
        pytest.param(43, 10, [(0, 16), (16, 16), (32, 11)], marks=pytest.mark.slow),  # two pipelines; 8 + 3 last
    ],
)
def test_the_kernel_on_the_cpu_draws_the_cached_engines_samples(on_cpu, batch, sms, groups):
    engine = on_cpu(batch, sms=sms, temperature=0.9, seed=3)
    assert engine.groups == groups
    prime = torch.randint(0, 256, (batch, 100))
    expected = _draws(CachedEngine(engine.model, batch, temperature=0.9, seed=3), prime, [120])
    assert torch.equal(_draws(engine, prime, [70, 50]), expected)


def test_the_kernel_on_the_cpu_continues_past_a_wrapping_noise_index(on_cpu):
    engine, prime = on_cpu(2, temperature=0.9, seed=5), torch.randint(0, 256, (2, 100))
    reference = CachedEngine(engine.model, 2, temperature=0.9, seed=5)
    index = 2**32 - 50  # past 2^31 (37 hours at 16 kHz), and the 32-bit counter wraps within the call
    assert torch.equal(_draws(engine, prime, [100], index), _draws(reference, prime, [100], index))


def test_the_kernel_on_the_cpu_breaks_a_tie_for_the_first_code_as_argmax_does(engine_on_cpu):
    """Greedy, every logit the head's bias, the maximum tied between codes 7 and 38. Lane c of the sampler's warp
    holds codes c, c + 32, ...: lane 6's best is 38 and lane 7's is 7, and the last step of the reduction meets the
    even lanes' best with the odd lanes', so a reduction that kept its own code on a tie would draw 38."""
    model = WaveNet(ODD).eval()
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.copy_(torch.linspace(-1, 0, 256))  # each code its own logit, all below 1
        model.head[-1].bias[[7, 38]] = 1.0
    engine = engine_on_cpu(model, 2, temperature=0, **ODD_LAYOUT)
    prime = torch.randint(0, 256, (2, 40))
    assert torch.equal(_draws(engine, prime, [5]), torch.full((2, 5), 7))


def test_the_profiling_build_accounts_for_each_blocks_time_and_draws_the_same(engine_on_cpu, on_cpu):
    """bench/persistent_profile.py's run, on CPU: each block's phases add up to its time in the launch, the blocks
    after the first wait for their input, and the build that times itself draws what the cached engine draws."""
    from bench.persistent_profile import profile_run

    layout = functools.partial(engine_on_cpu, **ODD_LAYOUT)
    torch.manual_seed(0)
    figures = profile_run(WaveNet(ODD).eval(), 1, torch.float32, 60, engine_type=layout)
    blocks = figures["blocks"]
    assert [b["role"] for b in blocks] == ["layers 0-2", "layers 3-5", "layers 6-7", "head 0", "head 1"]
    for b in blocks:
        assert 0.8 < sum(b["us_per_sample"].values()) / b["total_us"] <= 1.0, b
    assert all(b["us_per_sample"]["wait: x"] > 0 for b in blocks[1:3])
    assert 0 < figures["chain_work_us"] < figures["us_per_sample"]

    engine, prime = on_cpu(1, temperature=0.9, seed=3, profile=True), torch.randint(0, 256, (1, 100))
    expected = _draws(CachedEngine(engine.model, 1, temperature=0.9, seed=3), prime, [60])
    assert torch.equal(_draws(engine, prime, [60]), expected)
    assert engine.profile[:5, :7].sum() > 0  # it timed the launch


@pytest.mark.slow
def test_every_hand_off_is_ordered_as_the_gpus_memory_model_needs_under_threadsanitizer(tmp_path):
    """The kernel's runs on the CPU above, with persistent.cu and tests/cuda_on_cpu.h built with ThreadSanitizer:
    each read of what another CUDA thread or block wrote is ordered after the write by a __syncthreads or by an
    acquire of the flag the writer released, or it is reported. x86 orders memory more strongly than the GPU, so
    the runs alone would not show a missing acquire. ODD's runs but the one-stream draws (batch 9's second launch
    is one stream), and base in bf16's layout (12 blocks); not fp32's 34, which would take minutes more. About 4
    minutes."""
    runs = "(the_cpu or profiling_build_accounts) and not 1-10-groups0 and not (base and weights0)"
    command = ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path}", "-k", runs]
    run = sanitized([*command, "tests/test_persistent.py"], timeout=900)
    assert run.returncode == 0 and "ThreadSanitizer" not in run.stderr, run.stdout[-2000:] + run.stderr[-4000:]
    assert "7 passed" in run.stdout, run.stdout[-2000:]


# The GPU tests (`gpu_model`: the benchmark's 20- and 30-layer models on the device, from conftest.py).


@pytest.mark.gpu
# 43: more than one fp32 launch, and a part-filled pipeline; 256: 11 fp32 launches of 3 pipelines on 132 SMs
@pytest.mark.parametrize("batch", [1, 16, 43, 256])
@pytest.mark.parametrize("backend, tolerance", [("persistent", 1e-5), ("persistent-bf16", 2e-2)])
def test_gpu_persistent_logits_equal_full_forward(gpu_model, backend, tolerance, batch):
    codes = torch.randint(0, 256, (batch, gpu_model.receptive_field + 80), device="cuda")
    assert teacher_forced_error(gpu_model, backend, codes, prime=gpu_model.receptive_field) < tolerance


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 16, 256])
def test_gpu_persistent_draws_the_cached_engines_samples(gpu_model, batch):
    prime = torch.randint(0, 256, (batch, 100), device="cuda")
    expected = continued(gpu_model, "cached", prime, [200])
    assert torch.equal(continued(gpu_model, "persistent", prime, [130, 70]), expected)


@pytest.mark.gpu
def test_gpu_persistent_noise_index_past_2_to_the_31_continues_the_cached_engine(gpu_model):
    prime = torch.randint(0, 256, (2, 100), device="cuda")
    draws = []
    for backend in ("cached", "persistent"):
        engine = make_engine(gpu_model, 2, backend, temperature=0.9, seed=5)
        engine.prime(prime)
        engine.index = 2**32 - 50  # past 2^31 (37 hours at 16 kHz), and the 32-bit counter wraps within the call
        draws.append(engine.generate(100).cpu())
    assert torch.equal(draws[1], draws[0])
