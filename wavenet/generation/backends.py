"""Choosing a backend by name, and `auto`: the fastest backend that gives the right logits on this device."""

import logging
import time
from functools import cache

import torch

from wavenet.errors import UserError
from wavenet.generation.engine import CachedEngine, Engine, NaiveEngine
from wavenet.model import WaveNet

log = logging.getLogger(__name__)

BACKENDS = ("auto", "naive", "cached", "cpu", "graph", "triton", "triton-bf16", "persistent", "persistent-bf16")
# On CUDA; exact (fp32) backends only: bf16 is opt-in. `persistent` joins once a GPU has run it (its blocks wait on
# one another, so a fault there would hang rather than fail the measurement).
AUTO_CANDIDATES = ("triton", "graph", "cached")
AUTO_TOLERANCE = 1e-4  # relative logit error a candidate may show against the cached eager engine
_auto_choices: dict[tuple, str] = {}


def make_engine(
    model: WaveNet,
    batch_size: int,
    backend: str = "auto",
    temperature: float = 1.0,
    seed: int = 0,
    first_stream: int = 0,
) -> Engine:
    """An engine for `batch_size` streams of `model` (streams first_stream.. of `seed`); see BACKENDS."""
    check_backend(backend)
    if backend == "auto":
        backend = choose_backend(model, batch_size)
    weights = torch.bfloat16 if backend.endswith("-bf16") else torch.float32  # the fused kernels' weights
    if backend == "naive":
        return NaiveEngine(model, batch_size, temperature, seed, first_stream)
    if backend == "cached":
        return CachedEngine(model, batch_size, temperature, seed, first_stream)
    if backend == "cpu":
        from wavenet.generation.cpu_fused import CpuEngine

        return CpuEngine(model, batch_size, temperature, seed, first_stream)
    if backend == "graph":
        from wavenet.generation.graphs import GraphEngine

        return GraphEngine(model, batch_size, temperature, seed, first_stream)
    if backend in ("triton", "triton-bf16"):
        try:
            from wavenet.generation.triton_kernel import TritonEngine
        except ImportError as err:
            raise UserError(f"generation.backend={backend} needs Triton ({err}); use graph, cached or auto.") from err

        return TritonEngine(model, batch_size, temperature, seed, first_stream, weight_dtype=weights)
    if backend in ("persistent", "persistent-bf16"):
        from wavenet.generation.persistent import PersistentEngine

        return PersistentEngine(model, batch_size, temperature, seed, first_stream, weight_dtype=weights)
    raise AssertionError(backend)


def check_backend(backend: str) -> None:
    """Fail early, with the option's name, on a backend name that does not exist."""
    if backend not in BACKENDS:
        raise UserError(f"generation.backend={backend!r} is not a backend: use one of {', '.join(BACKENDS)}.")


def choose_backend(model: WaveNet, batch_size: int) -> str:
    """On CPU `cpu` (the C++ step) where its extension builds, else `cached`; on CUDA the fastest of
    AUTO_CANDIDATES whose logits match, measured once per process."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return "cpu" if cpu_extension_builds() else "cached"
    key = (torch.cuda.get_device_name(device), tuple(sorted(model.cfg.to_dict().items())), batch_size)
    if key not in _auto_choices:
        rates = {}
        for name in AUTO_CANDIDATES:
            try:
                rates[name] = measure(model, batch_size, name)
            except Exception as err:  # a backend that fails to build or disagrees is left out, not fatal
                log.warning(f"generation backend {name} left out: {err}")
        _auto_choices[key] = max(rates, key=rates.get) if rates else "cached"
        summary = ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items())
        log.info(f"generation backend auto: {_auto_choices[key]} (samples/s at batch {batch_size}: {summary})")
    return _auto_choices[key]


@torch.inference_mode()
def measure(model: WaveNet, batch_size: int, backend: str, samples: int = 256) -> float:
    """Check a backend's logits against the cached eager engine, then time it: aggregate samples/s."""
    device = next(model.parameters()).device
    rng = torch.Generator(device).manual_seed(0)  # leaves the global RNG (training's) alone
    codes = torch.randint(0, model.cfg.classes, (batch_size, 64), device=device, generator=rng)
    reference, engine = CachedEngine(model, batch_size), make_engine(model, batch_size, backend)
    for e in (reference, engine):
        e.prime(codes[:, :32])
    expected, got = reference.teacher_forced(codes[:, 32:]), engine.teacher_forced(codes[:, 32:])
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    if not error < AUTO_TOLERANCE:
        raise ValueError(f"relative logit error {error:.2e} against the cached engine")
    engine.generate(samples)  # warm-up: compilation, graph capture
    torch.cuda.synchronize()
    start = time.perf_counter()
    engine.generate(samples)
    torch.cuda.synchronize()
    return samples * batch_size / (time.perf_counter() - start)


@cache
def cpu_extension_builds() -> bool:
    """Whether the `cpu` backend's C++ extension is (or can be) built here; says why, once, when it cannot."""
    from wavenet.generation.cpu_fused import extension

    try:
        extension()
        return True
    except UserError as err:
        log.warning(f"generation backend auto: cached, not cpu ({err})")
        return False
