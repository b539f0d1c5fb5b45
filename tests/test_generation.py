"""The heart of the suite: every generation backend gives the full forward's logits and the cached engine's samples.

On CPU the Triton kernel runs in Triton's interpreter (conftest sets TRITON_INTERPRET=1); the `gpu` tests run
every backend on the real device with the 20- and 30-layer models of the benchmark.
"""

import copy
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, SMALL
from wavenet.config import model_preset
from wavenet.errors import UserError
from wavenet.generation import Engine, choose_backend, generate, gumbel_noise, make_engine, sample_codes
from wavenet.generation.engine import true_fp32
from wavenet.generation.graphs import DeviceCounterEngine
from wavenet.generation.sampling import stream_keys
from wavenet.model import WaveNet, WaveNetConfig

BF16_TOLERANCE = 2e-2  # relative logit error of bf16 weights (docs/PERFORMANCE.md); fp32 must be under 1e-5


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def engine_for(model: WaveNet, batch: int, backend: str, temperature: float = 1.0, seed: int = 0, **options) -> Engine:
    """A backend by name; "device-counter" is the graph backend's step code run eagerly (any device). Options go
    to the cpu or triton engine's constructor."""
    if backend == "device-counter":
        return DeviceCounterEngine(model, batch, temperature, seed)
    if options and backend == "cpu":
        from wavenet.generation.cpu_fused import CpuEngine

        return CpuEngine(model, batch, temperature, seed, **options)
    if options:
        from wavenet.generation.triton_kernel import TritonEngine

        return TritonEngine(model, batch, temperature, seed, **options)
    return make_engine(model, batch, backend, temperature, seed)


def teacher_forced_error(model: WaveNet, backend: str, codes: torch.Tensor, prime: int, **options) -> float:
    """Prime with codes[:, :prime], feed the rest; compare with a float64 full forward (on the model's device)."""
    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        full = reference(codes)[:, :, prime - 1 : -1].transpose(1, 2).cpu()  # (B, n, C): predictions of codes[prime:]
    engine = engine_for(model, codes.shape[0], backend, **options)
    engine.prime(codes[:, :prime])
    return relative_error(engine.teacher_forced(codes[:, prime:]).cpu().double(), full)


def continued(
    model: WaveNet, backend: str, prime: torch.Tensor, lengths: list[int], temperature: float = 0.9, **options
) -> torch.Tensor:
    """Samples from one engine (seed 3), asked for in several calls: the calls must continue one another."""
    engine = engine_for(model, prime.shape[0], backend, temperature=temperature, seed=3, **options)
    engine.prime(prime)
    return torch.cat([engine.generate(n) for n in lengths], dim=1).cpu()


@pytest.mark.parametrize("backend", ["naive", "cached", "cpu", "device-counter", "triton"])
def test_backend_logits_equal_full_forward(small_model, backend):
    """Teacher-forced past the receptive field (31), batch 2, fp32."""
    codes = torch.randint(0, 256, (2, 10 + 40))
    assert teacher_forced_error(small_model, backend, codes, prime=10) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("sm_count", [None, 6])
def test_triton_blocks_of_16_streams_use_the_matrix_path(small_model, sm_count):
    """17 streams in blocks of 16: tl.dot, and a second block with one live stream and 15 masked ones; spread over
    6 SMs, 6 programs of 3 live rows each (the last with 2) in tiles of 16."""
    codes = torch.randint(0, 256, (17, 5 + 36))
    engine = engine_for(small_model, 17, "triton", block_streams=16, sm_count=sm_count)
    assert engine.layout["STREAMS"] == (16 if sm_count is None else 3)
    assert teacher_forced_error(small_model, "triton", codes, prime=5, block_streams=16, sm_count=sm_count) < 1e-5


@pytest.mark.slow
def test_triton_bf16_weights_stay_within_the_documented_tolerance(small_model):
    codes = torch.randint(0, 256, (2, 10 + 40))
    error = teacher_forced_error(small_model, "triton", codes, prime=10, weight_dtype=torch.bfloat16)
    assert 1e-6 < error < BF16_TOLERANCE  # really rounded to bf16, and still close


@pytest.mark.slow
@pytest.mark.parametrize("weight_dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, BF16_TOLERANCE)])
def test_triton_on_the_base_model_without_padding(weight_dtype, tolerance):
    """The real sizes (64 / 2 x 64 / 256 / 256 need no padding), past the 3070-sample receptive field."""
    torch.manual_seed(2)
    model = WaveNet(WaveNetConfig()).eval()
    codes = torch.randint(0, 256, (1, model.receptive_field + 10))
    error = teacher_forced_error(model, "triton", codes, prime=model.receptive_field, weight_dtype=weight_dtype)
    assert error < tolerance


@pytest.mark.parametrize("prime_length", [1, 7, 31, 100])
def test_priming_in_one_forward_continues_the_full_forward(small_model, prime_length):
    codes = torch.randint(0, 256, (2, 150))
    assert teacher_forced_error(small_model, "cached", codes, prime=prime_length) < 1e-5


def test_priming_runs_its_convolutions_in_full_float32_and_leaves_the_settings_as_they_were():
    """On a GPU cuDNN rounds float32 convolutions to TF32 unless told not to, which would prime the state about 1e-3
    away from the float32 that the cached step computes; the setting is put back after, also on an error."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    seen = []
    with pytest.raises(RuntimeError, match="inside"):
        with true_fp32():
            seen.append((conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision))
            raise RuntimeError("inside")
    assert seen == [("ieee", "ieee")]
    assert conv.fp32_precision == before


@pytest.mark.parametrize("backend", ["cached", "cpu"])
def test_a_weight_normalised_model_generates_as_its_full_forward(backend):
    """model.weight_norm: the engines read each convolution's weight as it is in use, length times direction."""
    torch.manual_seed(5)
    model = WaveNet(WaveNetConfig(**{**SMALL.to_dict(), "weight_norm": True})).eval()
    lengths = [p for name, p in model.named_parameters() if name.endswith("weight.original0")]
    assert len(lengths) == 2 * len(model.layers) + 2, "every convolution, the head's too"
    with torch.no_grad():  # lengths other than the direction's own norm, which they equal at the start
        for length in lengths:
            length.mul_(torch.rand_like(length) + 0.5)
    codes = torch.randint(0, 256, (2, 10 + 40))
    assert teacher_forced_error(model, backend, codes, prime=10) < 1e-5


@pytest.mark.parametrize("backend", ["cached", "cpu"])
def test_base_model_cached_equals_full_forward(backend):
    torch.manual_seed(1)
    model = WaveNet(WaveNetConfig()).eval()
    codes = torch.randint(0, 256, (2, model.receptive_field + 60))
    assert teacher_forced_error(model, backend, codes, prime=model.receptive_field) < 1e-5


def test_cpu_backend_saturates_its_gates_as_the_full_forward_does():
    """Pre-activations of +-1000, far past where tanh and sigmoid saturate (biases, so that fp32 and fp64 agree on
    them): the cpu step's own vectorised exp (16 gate channels fill its vectors) must clamp, not overflow."""
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(stacks=1, layers_per_stack=4, residual_channels=16, gate_channels=16)).eval()
    with torch.no_grad():
        for layer in model.layers:
            signs = torch.tensor([1.0, -1.0]).repeat(16)  # filter and gate halves, each channel saturated either way
            layer.dilated.bias.copy_(1000.0 * signs[torch.randperm(32)])
    codes = torch.randint(0, 256, (2, model.receptive_field + 20))
    assert teacher_forced_error(model, "cpu", codes, prime=model.receptive_field) < 1e-5


@pytest.mark.parametrize("backend", ["naive", "cpu", "device-counter", pytest.param("triton", marks=pytest.mark.slow)])
def test_backends_draw_the_cached_engines_samples(small_model, backend):
    """Same seed, fp32: the same codes as cached eager, also when asked for in pieces (64 + 1 + 1 for the graph
    backend's step code: a whole graph's worth, then single steps)."""
    prime = torch.randint(0, 256, (2, 12))
    pieces = {"triton": [20, 46], "cpu": [30, 256 + 36]}.get(backend, [65, 1])  # cpu: across a noise chunk
    expected = continued(small_model, "cached", prime, [sum(pieces)])
    assert torch.equal(continued(small_model, backend, prime, pieces), expected)


@pytest.mark.parametrize("backend", ["cached", "cpu", "device-counter", pytest.param("triton", marks=pytest.mark.slow)])
def test_a_restarted_engine_draws_what_a_new_one_would(small_model, backend):
    """The stream renders every batch of tracks with one engine (a GPU backend keeps its captured graphs):
    restarted as streams 5 and 6 after drawing streams 0 and 1, it must draw what a new engine for 5 and 6 does."""
    engine = engine_for(small_model, 2, backend, temperature=0.9, seed=3)
    engine.prime(torch.randint(0, 256, (2, 12)))
    first = engine.generate(40)
    engine.restart(5)
    fresh = make_engine(small_model, 2, "cached", temperature=0.9, seed=3, first_stream=5)
    expected = fresh.generate(70)
    assert torch.equal(engine.generate(70), expected)
    assert not torch.equal(first, expected[:, :40])


def test_cpu_backend_in_shards_gives_the_full_forwards_logits_and_the_cached_samples(small_model):
    """Five streams in shards of 1, 2 and 2, each stepped on a thread of its own, still give every stream the full
    forward's logits and the cached engine's draws (sampled and greedy)."""
    shards = engine_for(small_model, 5, "cpu", shards=3).shards
    assert [len(range(5)[rows]) for rows in shards] == [1, 2, 2]
    codes = torch.randint(0, 256, (5, 10 + 40))
    assert teacher_forced_error(small_model, "cpu", codes, prime=10, shards=3) < 1e-5
    prime = torch.randint(0, 256, (5, 12))
    for temperature, pieces in [(0.9, [30, 256 + 14]), (0.0, [40])]:
        expected = continued(small_model, "cached", prime, [sum(pieces)], temperature)
        assert torch.equal(continued(small_model, "cpu", prime, pieces, temperature, shards=3), expected), temperature


@pytest.mark.parametrize("preset", ["tiny", "base"])
@pytest.mark.parametrize("batch", [1, 16])
def test_cpu_backend_on_the_real_sizes_gives_the_full_forwards_logits_and_the_cached_samples(preset, batch):
    """tiny and base at batch 1 and 16 (base's 16 streams run in shards where there are two threads): 600 steps,
    past every layer's ring wrapping round (the longest dilation is 512), then the cached engine's draws."""
    torch.manual_seed(4)
    model = WaveNet(model_preset(preset)).eval()
    codes = torch.randint(0, 256, (batch, 10 + 600))
    assert teacher_forced_error(model, "cpu", codes, prime=10) < 1e-5
    prime = codes[:, :12]
    assert torch.equal(continued(model, "cpu", prime, [100, 60]), continued(model, "cached", prime, [160]))


def test_the_cpu_backend_shards_only_where_each_shard_has_enough_work():
    from wavenet.generation.cpu_fused import MIN_SHARD_WORK, shard_count

    base = 1_237_000  # base's multiply-adds per sample
    assert shard_count(16, 2, base) == 2 and shard_count(4, 2, base) == 1 and shard_count(64, 1, base) == 1
    assert shard_count(16, 2, 200_000) == 1, "tiny at batch 16: one thread is faster"
    assert shard_count(1000, 4, MIN_SHARD_WORK) == 4


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=pytest.mark.slow)])
def test_a_noise_index_past_2_to_the_31_draws_the_cached_engines_samples(small_model, backend):
    """37 hours into a 16 kHz stream the noise index passes 2^31, and at 2^32 its 32-bit form wraps: every backend
    keeps drawing what the cached engine draws (and the Triton kernel takes the index as an int32 throughout)."""
    prime = torch.randint(0, 256, (2, 12))
    draws = []
    for name in ("cached", backend):
        engine = engine_for(small_model, 2, name, temperature=0.9, seed=3)
        engine.prime(prime)
        engine.index = 2**32 - 30
        draws.append(engine.generate(60))
    assert torch.equal(draws[1], draws[0])


def test_same_seed_same_audio_other_seed_other_audio(small_model):
    a = generate(small_model, 300, batch_size=2, temperature=1.0, seed=5)
    b = generate(small_model, 300, batch_size=2, temperature=1.0, seed=5)
    c = generate(small_model, 300, batch_size=2, temperature=1.0, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "streams in one batch must differ"


def test_a_streams_audio_does_not_depend_on_the_batch_size(small_model):
    three = generate(small_model, 200, batch_size=3, seed=5)
    assert torch.equal(three[:2], generate(small_model, 200, batch_size=2, seed=5))


def test_temperature_zero_is_greedy_and_low_temperature_concentrates(small_model):
    greedy = generate(small_model, 50, temperature=0.0, seed=1)
    assert torch.equal(greedy, generate(small_model, 50, temperature=0.0, seed=2))
    hot = generate(small_model, 400, temperature=1.0, seed=1)
    cold = generate(small_model, 400, temperature=0.05, seed=1)
    assert cold.unique().numel() < hot.unique().numel()


def test_counter_based_noise_draws_from_the_softmax():
    """Gumbel-max with the hashed noise: code frequencies match softmax(logits / T) over 40,000 draws."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    keys = stream_keys(seed=11, batch_size=1)
    noise = gumbel_noise(keys, 0, 40_000, 4)  # (steps, 1, 4)
    for temperature in (1.0, 0.5):
        codes = torch.stack([sample_codes(logits, temperature, noise[s]) for s in range(len(noise))])
        frequencies = torch.bincount(codes.flatten(), minlength=4).float() / len(codes)
        assert torch.allclose(frequencies, torch.softmax(logits[0] / temperature, 0), atol=0.01)


def test_auto_is_the_cpu_backend_on_cpu_and_cached_where_it_cannot_be_built(small_model, tmp_path):
    assert choose_backend(small_model, 4) == "cpu"
    script = (
        "import torch; from wavenet.model import WaveNet, WaveNetConfig; from wavenet.generation import choose_backend;"
        "print(choose_backend(WaveNet(WaveNetConfig(stacks=1, layers_per_stack=2)), 1))"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler"), "LOFI_WAVENET_BUILD_DIR": str(tmp_path / "build")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip().splitlines()[-1] == "cached", proc.stderr
    assert "generation backend auto: cached, not cpu" in proc.stderr and "needs g++ and ninja" in proc.stderr


def test_the_cpu_backends_build_is_this_environments_own():
    from wavenet.generation.cpu_fused import extension

    folder = Path(extension().__file__).parent
    assert folder.name == f"torch-{torch.__version__}-python-{sys.version_info.major}.{sys.version_info.minor}"


def test_a_build_lock_left_by_a_stopped_build_is_removed_not_waited_on_forever(tmp_path, caplog):
    from wavenet.generation.cpu_fused import wait_for_other_build

    lock = tmp_path / "lock"
    lock.touch()
    os.utime(lock, (time.time() - 3600, time.time() - 3600))  # an hour old: no build takes that long
    with caplog.at_level(logging.INFO, logger="wavenet.generation.cpu_fused"):
        wait_for_other_build(tmp_path)
    assert not lock.exists()
    assert f"removing {lock}" in caplog.text and "was stopped" in caplog.text

    caplog.clear()
    lock.touch()  # a fresh one: waited on, as another process may be building, until it is older than any build
    with caplog.at_level(logging.INFO, logger="wavenet.generation.cpu_fused"):
        wait_for_other_build(tmp_path, stale_after=1.0)
    assert not lock.exists()
    assert "waiting for another process's build" in caplog.text and f"removing {lock}" in caplog.text


def test_backend_mistakes_name_the_option(small_model):
    with pytest.raises(UserError, match=r"generation.backend='fast' is not a backend: use one of auto, naive"):
        make_engine(small_model, 1, "fast")
    with pytest.raises(UserError, match="generation.backend=graph needs a CUDA device"):
        make_engine(small_model, 1, "graph")


# The GPU tests: the benchmark's models on the real device.


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 48])
@pytest.mark.parametrize("backend", ["cached", "graph", "triton", "triton-bf16"])
def test_gpu_backend_logits_equal_full_forward(gpu_model, backend, batch):
    codes = torch.randint(0, 256, (batch, gpu_model.receptive_field + 80), device="cuda")
    error = teacher_forced_error(gpu_model, backend, codes, prime=gpu_model.receptive_field)
    assert error < (BF16_TOLERANCE if backend == "triton-bf16" else 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 48])
def test_gpu_triton_bf16_rounds_only_its_weights(gpu_model, batch):
    """bf16 weights, float32 activations: against a float64 forward of the same weights rounded to bf16. One stream
    takes the broadcast path (exact products of fp32 activations); 48 take tensor cores, where the activations enter
    the bf16 products in two parts (held to about 2**-17, so 1e-4 allows for it); rounded to one part they would put
    the logits near 1e-3 off. Triton's CPU interpreter gets bf16 tl.dot wrong, so only a GPU can check this. Primed
    with one code, so that no state comes from the unrounded weights."""
    rounded = copy.deepcopy(gpu_model)
    with torch.no_grad():
        for layer in rounded.layers:
            for conv in (layer.dilated, layer.out):
                conv.weight.copy_(conv.weight.bfloat16().float())
        for conv in (rounded.head[1], rounded.head[3]):
            conv.weight.copy_(conv.weight.bfloat16().float())
    codes = torch.randint(0, 256, (batch, 200), device="cuda")
    with torch.no_grad():
        full = rounded.double()(codes)[:, :, :-1].transpose(1, 2).cpu()
    engine = make_engine(gpu_model, batch, "triton-bf16")
    engine.prime(codes[:, :1])
    assert relative_error(engine.teacher_forced(codes[:, 1:]).cpu().double(), full) < (1e-5 if batch == 1 else 1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 48])
@pytest.mark.parametrize("backend", ["graph", "triton"])
def test_gpu_backends_draw_the_cached_engines_samples(gpu_model, backend, batch):
    prime = torch.randint(0, 256, (batch, 100), device="cuda")
    expected = continued(gpu_model, "cached", prime, [200])
    assert torch.equal(continued(gpu_model, backend, prime, [130, 70]), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["graph", "triton"])
def test_gpu_a_restarted_engine_keeps_its_graphs_and_draws_the_new_streams(gpu_model, backend):
    """The stream restarts one engine for every batch of tracks: the captured graphs must read the new streams' noise
    keys in place, and none is captured again."""
    engine = make_engine(gpu_model, 4, backend, seed=3)
    engine.generate(130)
    graphs = dict(getattr(engine, "graphs", {}))
    engine.restart(8)
    got = engine.generate(130)
    assert getattr(engine, "graphs", {}) == graphs
    assert torch.equal(got, make_engine(gpu_model, 4, "cached", seed=3, first_stream=8).generate(130))


@pytest.mark.gpu
def test_gpu_auto_picks_a_backend_with_the_cached_engines_samples(gpu_model):
    assert choose_backend(gpu_model, 1) in ("triton", "graph", "cached")
    assert torch.equal(generate(gpu_model, 300, 1, seed=4), generate(gpu_model, 300, 1, seed=4, backend="cached"))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cached", "graph", "triton"])
def test_gpu_progress_counts_samples_once_the_device_has_made_them(gpu_model, backend):
    """A launch returns before its work runs: progress must wait for it, or a stream's real-time factor and rate
    limit count samples that do not exist yet. The device is kept busy for about a second first."""
    engine = make_engine(gpu_model, 1, backend)
    engine.generate(65)  # compiled, its graphs captured
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # clock cycles: about a second of work queued ahead of the samples
    busy = torch.cuda.Event()
    busy.record()
    reported = []
    engine.generate(200, progress=lambda n: reported.append((n, busy.query())))
    assert sum(n for n, _ in reported) == 200
    assert all(done for _, done in reported), reported


H100_SHARED_BYTES = 227 * 1024  # the most shared memory one program may use on an H100 (sm_90)


@pytest.mark.slow
def test_triton_kernel_compiles_for_the_h100_within_its_resources():
    """No GPU needed: Triton compiles for sm_90 here. `base` fits a program's shared memory and registers
    (fp32 at 256 streams spills a little: its exact tl.dot runs on FMA units with large accumulators)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    command = [sys.executable, "bench/kernel_resources.py", "--json", "--batches", "1", "256"]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(row["batch"], row["dtype"]) for row in rows} == {(1, "fp32"), (1, "bf16"), (256, "fp32"), (256, "bf16")}
    for row in rows:
        assert row["shared_bytes"] <= H100_SHARED_BYTES, row
        assert row["spilled_bytes"] <= (2048 if (row["batch"], row["dtype"]) == (256, "fp32") else 0), row
